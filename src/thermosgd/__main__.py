from thermosgd.cli import entry

entry()
