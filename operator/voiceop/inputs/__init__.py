"""Reading manifests (YAML files and folders) into api objects."""
