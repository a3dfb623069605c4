"""The device side: programs that run on the Jetson (Python 3.6+), shipped there by ``sqakd-edge bench``.

Nothing here imports the sqakd_edge package. Installed, this folder is ``sqakd_edge._device``.
"""
