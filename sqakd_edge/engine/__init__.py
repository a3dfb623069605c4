"""TensorRT engines on the machine that runs them: :func:`~sqakd_edge.engine.build.build_engine`."""
