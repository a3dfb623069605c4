"""``python -m sqakd_edge`` is the CLI; ``torchrun -m sqakd_edge train ...`` runs it per process."""

from .cli import main

if __name__ == "__main__":
    main()
