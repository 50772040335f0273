"""The smallest Django settings for kojo.contrib.django's tests (DJANGO_SETTINGS_MODULE).

The test process points TASKS at each test's database with override_settings; a server
subprocess gets it from KOJO_TEST_DJANGO_DATABASE."""

import importlib.util
import os

SECRET_KEY = "kojo-tests-only"
USE_TZ = True
DATABASES: dict[str, dict[str, str]] = {}
# The backport's app resets its backends when TASKS changes (override_settings);
# Django 6's django.tasks is no app.
INSTALLED_APPS = [] if importlib.util.find_spec("django.tasks") else ["django_tasks"]
TASKS = {
    "default": {
        "BACKEND": "kojo.contrib.django.KojoBackend",
        "OPTIONS": {"database": os.environ.get("KOJO_TEST_DJANGO_DATABASE", "sqlite:///unused.db")},
    }
}
