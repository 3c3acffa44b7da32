"""Serving: ovq models behind a KServe v2 server (OVMS, Triton, KServe, ``ovq serve``), and the edge's client.

``repository`` writes model repositories (OVMS, Triton) and KServe manifests; ``server`` is ``ovq serve`` (the
``kserve`` library, imported only there and in its parts: ``served_model``, ``rest_gate``, ``grpc_server``,
``server_errors``; ``listen`` binds its ports first); ``client`` is the v2 client behind :class:`RemoteDetector`; ``remote``
opens "a model path or a serving URL" as a detector. The stage sits after ``model`` (it builds on the detector's
preprocessing and decoders) and before ``evaluation`` (predict, eval and bench accept a serving URL).
"""
