"""Serving settings: a frozen, typed object, with the admin token kept out of ``repr``.

>>> c = ServingConfig.from_env({"DRIFTLINE_SERVING_ADMIN_TOKEN": "s3cret-token-0123"}, port=9000)
>>> c.port, c.admin_token.get_secret_value(), "s3cret" in repr(c)
(9000, 's3cret-token-0123', False)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = ["ServingConfig"]


class ServingConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    history: int = Field(32, ge=1, description="versions kept in memory per model, for pinning and replay")
    max_batch: int = Field(256, ge=1, description="records per POST /predict")
    max_body_bytes: int = Field(1_048_576, ge=256, description="request bodies above this get 413")
    admin_token: SecretStr | None = Field(None, repr=False, description="bearer token of the admin routes")
    namespace: str | None = None
    log_level: str = "info"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, token_file: str | None = None,
                 **values) -> "ServingConfig":
        """Take the admin token from ``token_file``, else ``DRIFTLINE_SERVING_ADMIN_TOKEN``."""
        env = os.environ if environ is None else environ
        token = Path(token_file).read_text().strip() if token_file else env.get("DRIFTLINE_SERVING_ADMIN_TOKEN")
        if token is not None and len(token) < 16:
            raise ValueError("the serving admin token needs at least 16 characters")
        return cls(admin_token=token or None, **values)
