"""The device's MQTT topics (CONTRACTS), built once from the prefix and device id."""

from __future__ import annotations

from dataclasses import dataclass

from edge_runtime.errors import ConfigError

_FORBIDDEN = ("+", "#", "\x00")


@dataclass(frozen=True)
class Topics:
    """Topic names for one device; ``prefix/device_id/...``."""

    prefix: str
    device_id: str

    def __post_init__(self) -> None:
        for part in (self.prefix, self.device_id):
            if (
                not part
                or any(c in part for c in _FORBIDDEN)
                or part.startswith("/")
                or part.endswith("/")
            ):
                raise ConfigError(
                    f"invalid topic part {part!r}: no wildcards, no leading/trailing '/'"
                )
        if "/" in self.device_id:
            raise ConfigError(f"device id {self.device_id!r} must not contain '/'")

    def _t(self, leaf: str) -> str:
        return f"{self.prefix}/{self.device_id}/{leaf}"

    def source(self, name: str, leaf: str) -> str:
        """``sources/<name>/<leaf>``: a camera or stream source's predictions, state, snapshot."""
        return self._t(f"sources/{name}/{leaf}")

    @property
    def status(self) -> str:
        return self._t("status")

    @property
    def infer(self) -> str:
        return self._t("infer")

    @property
    def predictions(self) -> str:
        return self._t("predictions")

    @property
    def telemetry(self) -> str:
        return self._t("telemetry")

    @property
    def errors(self) -> str:
        return self._t("errors")

    @property
    def model_update(self) -> str:
        return self._t("model/update")

    @property
    def model_events(self) -> str:
        return self._t("model/events")

    @property
    def model_rollback(self) -> str:
        return self._t("model/rollback")

    @property
    def model_state(self) -> str:
        return self._t("model/state")

    def group_update(self, group: str) -> str:
        return f"{self.prefix}/groups/{group}/model/update"
