"""The bare broadcast baseline: servers per WebSocket library and the load that measures them.

``server`` holds the servers, ``load`` the bounded loopback load generator (receiving
clients in worker processes, a paced sender, latency histograms, the rising-rate
procedure). ``loadtest/bench_ws_libs.py`` runs them against each library.
"""
