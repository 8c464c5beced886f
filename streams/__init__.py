"""streams: the Faust app, settings, agents, web views and CLI. Wires the rest."""
