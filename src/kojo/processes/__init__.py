"""The process tree of one host: server → root → job processes (and a maintainer).

    kojo: /server[8]/root[22]/job[30]

The server is the `kojo server start` process. It forks the root and forks it
again if it dies. The root keeps a pool of job processes and one maintainer.
Children die with their parent (PR_SET_PDEATHSIG plus a parent check), so no
kojo process outlives the server, kill -9 included.

    server.py       the server: forks the root again if it dies
    root.py         the root: executes pool_policy's decisions, reaps children
    pool_policy.py  the pool's rules: a pure function of what the root sees
    job_process.py  a job process, and its BatchKeeper thread
    maintainer.py   the cluster's housekeeping
    lifetime.py     what every process shares: register, use_owner, signals, close
    patience.py     waiting out the database; exit 75 when the registration is lost
    idle_board.py   which job processes are idle (shared memory)
    lineage.py      forking children that know their place and die with their parent
    signal_queue.py signals as events in a select loop

Settings come from kojo.settings (parsed once by `kojo server start`), time from a
kojo.clock.Clock (a fake one in unit tests).
"""
