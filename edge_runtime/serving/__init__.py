"""HTTP serving: one server in the daemon for ``POST /v1/predict``, the TensorFlow
Serving REST API, the Open Inference Protocol (KServe v2) and ``/metrics``.

``server`` owns the sockets, the worker threads and the limits (body cap, timeouts,
token, TLS); ``routes`` maps paths to the APIs, one module each (``predict``,
``tfserving``, ``kserve``); ``model`` is their way into the daemon's pipeline; ``reply``
hands the pipeline's answers back to the waiting HTTP workers.
"""
