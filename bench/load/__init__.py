"""Load generator for FastDFS-compatible clusters: ``python -m bench.load --tracker HOST:PORT`` or ``--spawn``.

It speaks the wire protocol itself (frames from :mod:`cluster.protocol`, plain blocking sockets), so
it measures any FastDFS-compatible tracker and storage, FastDFS's own included:

* :mod:`.wire`: one connection, one ``sendall`` per request, replies read into a reused buffer;
* :mod:`.worker`: one connection's uploads, downloads and deletes, every request timed;
* :mod:`.report`: rates, percentiles, tables, medians over runs;
* :mod:`.spawn`: a throwaway local tracker and storage;
* :mod:`.cli`: options, worker processes, output and exit code.
"""

from .cli import main

__all__ = ["main"]
