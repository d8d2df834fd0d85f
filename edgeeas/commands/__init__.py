"""CLI subcommands, each in its own module (loaded lazily by edgeeas.cli)."""
