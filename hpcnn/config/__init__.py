"""Job configuration: one typed schema, one format (YAML), overrides as ``key.sub=value``."""
from .load import (apply_overrides, default_config, dump_yaml, from_dict, get, load_job, parse_override,
                   read_yaml, split_config_args, to_dict, validate)
from .schema import JobConfig

__all__ = ["JobConfig", "apply_overrides", "default_config", "dump_yaml", "from_dict", "get", "load_job",
           "parse_override", "read_yaml", "split_config_args", "to_dict", "validate"]
