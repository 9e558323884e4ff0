from assocmem.cli.app import app  # noqa: F401
