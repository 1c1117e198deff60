"""The Redis side of serving, one module per job, over one key layout (keys.py).

    lists.py         ServedLists: the nightly writes each user's top-K list under a new
                     version, flips NS:current to it, expires old versions and drops failed
                     ones; the functions read the pointer and a user's list.
    builds.py        BuildRecords: what a nightly run recorded about its version (the run
                     summary, each user's list build time and data fingerprint), read by the
                     next run's gate and list carry-over.
    event_stream.py  EventStream: POST /events appends to the stream and to each user's
                     recent history; infra/events_log.py drains the stream into Parquet.
    item_filters.py  ItemFilters: items that must not be recommended and item categories.
    experiments.py   Experiments: A/B experiments' definitions and states (draft, running,
                     stopped); the running ones in one small hash.
    codec.py         the bytes of one list (no Redis).
    client.py        connect(url): one server (redis://) or a Redis Cluster
                     (redis+cluster://), for which keys.py tags the keys.
"""
