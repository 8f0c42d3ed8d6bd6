"""Where Hearth keeps its files.

Everything Hearth writes (settings, history, models, logs, caches) lives under the platform's
usual folders (platformdirs), or under one folder when ``HEARTH_HOME`` is set: tests and
portable installs use that to keep every file in one place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "Hearth"
HOME_ENV = "HEARTH_HOME"


@dataclass(frozen=True)
class HearthPaths:
    data_dir: Path  # history database, model index
    config_dir: Path  # settings.json, presets
    cache_dir: Path  # remote GGUF headers, download scratch
    log_dir: Path
    models_dir: Path  # downloaded and imported GGUF files

    def ensure(self) -> HearthPaths:
        for folder in (self.data_dir, self.config_dir, self.cache_dir, self.log_dir,
                       self.models_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def hearth_paths() -> HearthPaths:
    """Read ``HEARTH_HOME`` on every call so a test can point it at a temp dir at any time."""
    home = os.environ.get(HOME_ENV)
    if home:
        root = Path(home).expanduser().resolve()
        return HearthPaths(
            data_dir=root / "data",
            config_dir=root / "config",
            cache_dir=root / "cache",
            log_dir=root / "logs",
            models_dir=root / "models",
        )
    data = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    return HearthPaths(
        data_dir=data,
        config_dir=Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)),
        cache_dir=Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)),
        log_dir=Path(platformdirs.user_log_dir(APP_NAME, appauthor=False)),
        models_dir=data / "models",
    )
