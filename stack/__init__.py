"""trace-stack's commands: up, check, validate, drift, down, logs (`python -m stack --help`). They take plain
data from the program (program/) and never load pulumi_docker or Jinja."""
