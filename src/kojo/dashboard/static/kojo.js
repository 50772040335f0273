// kojo dashboard: confirm actions, and an optional reload every 5 s (remembered per browser).
"use strict";
document.addEventListener("submit", (event) => {
  const question = event.target.dataset.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});
const box = document.getElementById("auto-refresh");
if (box) {
  box.checked = localStorage.getItem("kojo-refresh") === "on";
  box.addEventListener("change", () => localStorage.setItem("kojo-refresh", box.checked ? "on" : "off"));
  setInterval(() => { if (box.checked && !document.hidden) window.location.reload(); }, 5000);
}
