"""The process tree of one host: server → root → job processes (and a maintainer).

    kojo: /server[8]/root[22]/job[30]

The server is the `kojo server start` process. It forks the root and forks it
again if it dies. The root keeps a pool of job processes and one maintainer.
Children die with their parent (PR_SET_PDEATHSIG plus a parent check), so no
kojo process outlives the server, kill -9 included.
"""
