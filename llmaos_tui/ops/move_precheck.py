"""A container move's pre-checks: every reason it cannot work, found before anything
changes, each a :class:`~llmaos_tui.ops.move_model.Refusal` with words an operator acts on,
and the :class:`~llmaos_tui.ops.move_model.MovePlan` that the steps then follow."""

from __future__ import annotations

import contextlib
from typing import Any

import docker

from llmaos_tui.ops.move_base import MoverBase
from llmaos_tui.ops.move_model import (
    _DEFAULT_NETWORKS,
    _WILDCARD,
    COMMIT_REPO,
    MovePlan,
    Refusal,
    _arch,
    _ip_overlap,
    _port_bindings,
)


class PrecheckMixin(MoverBase):
    """Works out a move's plan and refusals (``MoveEngine.plan``); changes nothing."""

    @staticmethod
    def _read_only_refusal() -> Refusal:
        return Refusal("read-only", "the console is read-only (--read-only): moves are refused")

    def _plan(self, attrs: dict[str, Any], *, commit: bool, keep_source: bool) -> MovePlan:
        """Every pre-check in turn, then the plan they allow (with their refusals)."""
        name = str(attrs.get("Name", "")).lstrip("/")
        hc = attrs.get("HostConfig") or {}
        state = attrs.get("State") or {}
        dst_info = self.dst.client.info()
        refusals: list[Refusal] = [self._read_only_refusal()] if self.read_only else []
        refusals += self._check_engines(dst_info)
        refusals += self._check_state(name, state)
        image, image_id, stream, image_size, why = self._check_image(attrs, name, commit, dst_info)
        refusals += why
        refusals += self._check_name(name)
        ports, why = self._check_ports(hc)
        refusals += why
        volumes, binds, why = self._check_mounts(attrs, hc)
        refusals += why
        refusals += self._check_devices(hc)
        gpus = [dict(r) for r in hc.get("DeviceRequests") or []]
        if gpus:  # device requests travel as they are; the target must have GPUs for them
            refusals += self._check_gpus(gpus, dst_info)
        refusals += self._check_memory(name, hc, dst_info)
        refusals += self._check_networks(attrs, name, hc)
        running = bool(state.get("Running"))
        steps, notes = self._steps(commit, stream, running, bool(volumes), keep_source)
        return MovePlan(
            container=name,
            container_id=str(attrs.get("Id", "")),
            source=self.src.name,
            target=self.dst.name,
            image=image,
            image_id=image_id,
            stream_image=stream,
            image_size=image_size,
            was_running=running,
            commit=commit,
            keep_source=keep_source,
            volumes=volumes,
            binds=binds,
            ports=ports,
            gpus=gpus,
            steps=steps,
            refusals=refusals,
            step_notes=notes,
        )

    @staticmethod
    def _steps(
        commit: bool, stream: bool, running: bool, volumes: bool, keep_source: bool
    ) -> tuple[list[str], dict[str, str]]:
        """The step ids the move will take, and a note on those that need one."""
        steps = ["inspect", "precheck"]
        if commit:
            steps.append("commit")
        steps += ["image", "create"]
        if running:
            steps.append("stop")
        if volumes:
            steps.append("copy")
        if running:
            steps += ["start", "verify"]
        steps.append("finish")
        notes = {"finish": "keep source stopped" if keep_source else "remove source"}
        if not stream:
            notes["image"] = "present on target: not streamed"
        return steps, notes

    def _check_engines(self, dst_info: dict[str, Any]) -> list[Refusal]:
        """Two engines, not one reached twice."""
        src_info = self.src.client.info()
        if src_info.get("ID") and src_info.get("ID") == dst_info.get("ID"):
            return [
                Refusal(
                    "same-engine",
                    f"{self.src.name} and {self.dst.name} are the same Docker engine: "
                    "nothing to move",
                )
            ]
        return []

    @staticmethod
    def _check_state(name: str, state: dict[str, Any]) -> list[Refusal]:
        status = str(state.get("Status", "?"))
        if status not in ("running", "exited", "created"):
            return [
                Refusal(
                    "state", f"{name} is {status}; only running or stopped containers can be moved"
                )
            ]
        return []

    def _check_image(
        self, attrs: dict[str, Any], name: str, commit: bool, dst_info: dict[str, Any]
    ) -> tuple[str, str, bool, int, list[Refusal]]:
        """(what the target is created from, image id, stream it?, size, refusals). By ID,
        so what arrives is exactly what ran."""
        cfg = attrs.get("Config") or {}
        dst_name = self.dst.name
        refusals: list[Refusal] = []
        image_id = str(attrs.get("Image", ""))
        image_ref = str(cfg.get("Image") or image_id)
        if commit:
            return f"{COMMIT_REPO}/{name}:pending", image_id, True, 0, refusals
        image_size = 0
        src_image = None
        with contextlib.suppress(docker.errors.ImageNotFound):
            src_image = self.src.client.api.inspect_image(image_id)
        stream = not self._dst_has_image(image_id)
        if src_image is None and stream:
            refusals.append(
                Refusal(
                    "image",
                    f"image {image_ref} ({image_id[:19]}) is gone "
                    f"from {self.src.name} and missing on {dst_name}",
                )
            )
        if src_image is not None:
            image_size = int(src_image.get("Size") or 0)
            arch = _arch(str(src_image.get("Architecture") or ""))
            dst_arch = _arch(str(dst_info.get("Architecture") or ""))
            if arch and dst_arch and arch != dst_arch:
                refusals.append(
                    Refusal("arch", f"image {image_ref} is {arch}; {dst_name} runs {dst_arch}")
                )
        # Create from the tag when the target's tag is (or will be) this image; when the
        # target's tag names another image, create by ID and leave that tag alone.
        dst_tagged = self._tag_on(self.dst.client, image_ref) if image_ref != image_id else None
        image = image_ref if dst_tagged in (None, image_id) else image_id
        return image, image_id, stream, image_size, refusals

    def _check_name(self, name: str) -> list[Refusal]:
        clash = self.dst.client.api.containers(all=True, filters={"name": f"^/{name}$"})
        return [
            Refusal(
                "name-clash",
                f"{self.dst.name} already has a container named "
                f"{name} ({str(c.get('Id'))[:12]}, {c.get('State')})",
            )
            for c in clash
        ]

    def _check_ports(self, hc: dict[str, Any]) -> tuple[list[str], list[Refusal]]:
        """The published ports ("0.0.0.0:8080->80/tcp"), against the target's running
        containers and the target host's own listeners."""
        dst_name = self.dst.name
        refusals: list[Refusal] = []
        any_ip = "0.0.0.0"  # noqa: S104 (how `docker ps` shows "all addresses")
        ports = [f"{ip or any_ip}:{hp}->{cp}/{proto}" for ip, hp, proto, cp in _port_bindings(hc)]
        taken: list[tuple[str, int, str, str]] = []
        for c in self.dst.client.api.containers():
            for p in c.get("Ports") or []:
                if p.get("PublicPort"):
                    cname = str((c.get("Names") or ["?"])[0]).lstrip("/")
                    taken.append(
                        (
                            str(p.get("IP") or ""),
                            int(p["PublicPort"]),
                            str(p.get("Type") or "tcp"),
                            cname,
                        )
                    )
        for ip, hp, proto, _cp in _port_bindings(hc):
            for tip, thp, tproto, cname in taken:
                if hp == thp and proto == tproto and _ip_overlap(ip, tip):
                    refusals.append(
                        Refusal(
                            "port-clash",
                            f"port {hp}/{proto} is already published on {dst_name} by {cname}",
                        )
                    )
                    break
            else:
                # A process of the host itself (not a container) may hold it: the start would
                # fail to bind. TCP only; a wildcard binding is probed on the loopback.
                probe = "127.0.0.1" if ip in _WILDCARD else ip
                if proto == "tcp" and self.dst.listening(probe, hp):
                    refusals.append(
                        Refusal(
                            "port-clash",
                            f"port {hp}/tcp is in use on {dst_name} by a process of the host "
                            f"(something accepts connections at {probe}:{hp})",
                        )
                    )
        return ports, refusals

    def _check_mounts(
        self, attrs: dict[str, Any], hc: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], list[dict[str, str]], list[Refusal]]:
        """(volumes, binds, refusals): named volumes are copied (local ones only, and not
        onto a volume of the same name); bind mounts must exist on the target."""
        dst_name = self.dst.name
        refusals: list[Refusal] = []
        volumes: list[dict[str, Any]] = []
        binds: list[dict[str, str]] = []
        dst_volumes = {v["Name"] for v in (self.dst.client.api.volumes().get("Volumes") or [])}
        named_in_config = self._named_volumes(hc)
        for m in attrs.get("Mounts") or []:
            kind, dest = m.get("Type"), str(m.get("Destination", ""))
            if kind == "volume":
                vname = str(m.get("Name", ""))
                anonymous = vname not in named_in_config
                driver = str(m.get("Driver") or "local")
                volumes.append(
                    {"name": vname, "dest": dest, "driver": driver, "anonymous": anonymous}
                )
                if driver != "local":
                    refusals.append(
                        Refusal(
                            "volume",
                            f"volume {vname} uses driver {driver}; "
                            "only local volumes' data can be copied",
                        )
                    )
                if not anonymous and vname in dst_volumes:
                    refusals.append(
                        Refusal(
                            "volume",
                            f"{dst_name} already has a volume named "
                            f"{vname}; moving would mix its data with this one",
                        )
                    )
            elif kind == "bind":
                source = str(m.get("Source", ""))
                binds.append({"source": source, "dest": dest})
                refusals.extend(self._check_path(source, f"bind mount {source} (-> {dest})"))
        return volumes, binds, refusals

    def _check_devices(self, hc: dict[str, Any]) -> list[Refusal]:
        refusals: list[Refusal] = []
        for dev in hc.get("Devices") or []:
            path = str(dev.get("PathOnHost", ""))
            refusals.extend(self._check_path(path, f"device {path}"))
        return refusals

    def _check_memory(
        self, name: str, hc: dict[str, Any], dst_info: dict[str, Any]
    ) -> list[Refusal]:
        """A limit the target cannot give is refused here rather than at start."""
        dst_name = self.dst.name
        refusals: list[Refusal] = []
        limit = int(hc.get("Memory") or 0)
        total = int(dst_info.get("MemTotal") or 0)
        if limit and total and limit > total:
            refusals.append(
                Refusal(
                    "memory",
                    f"{name} is limited to {limit >> 20} MiB; "
                    f"{dst_name} has {total >> 20} MiB in all",
                )
            )
        elif limit and self.dst.mem_available is not None and limit > self.dst.mem_available:
            refusals.append(
                Refusal(
                    "memory",
                    f"{name} is limited to {limit >> 20} MiB; "
                    f"{dst_name} has {self.dst.mem_available >> 20} MiB free",
                )
            )
        return refusals

    def _check_networks(
        self, attrs: dict[str, Any], name: str, hc: dict[str, Any]
    ) -> list[Refusal]:
        """User-defined networks must exist on the target; another container's is no
        network to move to."""
        dst_name = self.dst.name
        refusals: list[Refusal] = []
        mode = str(hc.get("NetworkMode") or "")
        if mode.startswith("container:"):
            refusals.append(
                Refusal(
                    "network",
                    f"{name} shares the network of another "
                    f"container ({mode}); move that one instead",
                )
            )
        nets = list(((attrs.get("NetworkSettings") or {}).get("Networks") or {}).keys())
        dst_nets = {n.get("Name") for n in self.dst.client.api.networks()}
        for net in nets:
            if net not in _DEFAULT_NETWORKS and net not in dst_nets:
                refusals.append(
                    Refusal(
                        "network",
                        f"{name} is on network {net}, which "
                        f"{dst_name} lacks (docker network create {net})",
                    )
                )
        return refusals

    @staticmethod
    def _named_volumes(hc: dict[str, Any]) -> set[str]:
        """Volume names the container was created with (-v NAME:/p, --mount); the rest of
        its volume mounts are anonymous (VOLUME in the image, -v /p)."""
        names = set()
        for b in hc.get("Binds") or []:
            first = str(b).split(":", 1)[0]
            if first and not first.startswith("/"):
                names.add(first)
        for m in hc.get("Mounts") or []:
            if m.get("Type") == "volume" and m.get("Source"):
                names.add(str(m["Source"]))
        return names

    def _check_path(self, path: str, what: str) -> list[Refusal]:
        try:
            exists = self.dst.path_exists(path)
        except Exception as exc:  # noqa: BLE001 - a path that cannot be probed is a refusal
            return [
                Refusal("bind-mount", f"{what}: cannot check it exists on {self.dst.name} ({exc})")
            ]
        if exists:
            return []
        return [
            Refusal(
                "bind-mount",
                f"{what} does not exist on {self.dst.name}; create it "
                "there (or drop the mount) first",
            )
        ]

    def _check_gpus(
        self, requests: list[dict[str, Any]], dst_info: dict[str, Any]
    ) -> list[Refusal]:
        have = self.dst.gpus
        runtimes = set((dst_info.get("Runtimes") or {}).keys())
        if have is None:
            # No count from the agent: a target without the NVIDIA runtime has none to give.
            have = 0 if "nvidia" not in runtimes else None
        want = 0
        for r in requests:
            if r.get("DeviceIDs"):
                return [
                    Refusal(
                        "gpu",
                        f"the container is pinned to GPUs {r['DeviceIDs']}, "
                        f"which name devices of {self.src.name}; use a GPU count",
                    )
                ]
            count = int(r.get("Count") or 0)
            want = max(want, 1 if count < 0 else count)
        if have == 0:
            return [
                Refusal(
                    "gpu",
                    f"the container asks for GPUs ({self._gpu_words(requests)}) "
                    f"and {self.dst.name} has none",
                )
            ]
        if have is not None and want > have:
            return [
                Refusal("gpu", f"the container asks for {want} GPUs; {self.dst.name} has {have}")
            ]
        return []

    @staticmethod
    def _gpu_words(requests: list[dict[str, Any]]) -> str:
        words = []
        for r in requests:
            count = int(r.get("Count") or 0)
            words.append(
                f"{r.get('Driver') or 'any driver'}, {'all' if count < 0 else count or 'some'}"
            )
        return "; ".join(words)
