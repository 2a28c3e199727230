"""``python -m gankit`` runs the CLI (and is what ``torchrun -m gankit`` launches)."""

from gankit.cli import main

if __name__ == "__main__":
    main()
