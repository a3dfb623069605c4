"""Device profiles and the example inventory (data files). Installed, this folder is ``sqakd_edge._deploy``."""
