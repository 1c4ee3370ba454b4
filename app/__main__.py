"""``python -m app`` is the ``lightbox`` command."""

from app.cli import main

main()
