"""The site registry (what exists: enterprises, sites, meters, job types, shifts, the
regulatory profile) and the regulatory profiles it names. See :mod:`.site`, :mod:`.profiles`
and :mod:`.watch` (hot reload)."""

from tingbao.edge.settings import ConfigError

from .profiles import DEFAULT_PROFILE, Profile, profile, profile_ids
from .site import (
    Enterprise,
    JobType,
    Meter,
    Registry,
    Site,
    Task,
    load_registry,
    registry_from_mapping,
)
from .watch import RegistryWatcher

__all__ = ["DEFAULT_PROFILE", "ConfigError", "Enterprise", "JobType", "Meter", "Profile",
           "Registry", "RegistryWatcher", "Site", "Task", "load_registry", "profile",
           "profile_ids", "registry_from_mapping"]
