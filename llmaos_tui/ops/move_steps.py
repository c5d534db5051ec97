"""A container move's steps, each journaled before it runs: commit, image, create, stop,
copy, start, verify, finish (see :mod:`llmaos_tui.ops.container_move`), and the audit line
that says how it ended."""

from __future__ import annotations

import contextlib
import posixpath
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import docker

from llmaos_tui.ops.journal import MoveRecord
from llmaos_tui.ops.move_base import MoverBase
from llmaos_tui.ops.move_model import (
    _DEFAULT_NETWORKS,
    AUDIT_ACTION,
    COMMIT_REPO,
    MoveError,
    MovePlan,
    MoveResult,
    _reason,
)
from llmaos_tui.ops.move_streams import Pipe, load_image, open_archive, open_image_save, put_archive


class StepsMixin(MoverBase):
    """Runs a planned move's steps (``MoveEngine.move``), and its last one, ``finish``."""

    def _journal_plan(self, attrs: dict[str, Any], plan: MovePlan) -> dict[str, Any]:
        return {
            "kind": "container.move",
            "source": self.src.name,
            "target": self.dst.name,
            "operator": self.operator,
            "attrs": attrs,  # everything needed to create the target, or put the source back
            "plan": asdict(plan),
            "settle": self.settle,
            "stop_timeout": self.stop_timeout,
        }

    @staticmethod
    def _last_step(rec: MoveRecord) -> str:
        return rec.steps[-1].name if rec.steps else "begin"

    @contextlib.contextmanager
    def _step(
        self, rec: MoveRecord, name: str, timings: dict[str, float], **data: Any
    ) -> Iterator[dict[str, Any]]:
        """Journal the step, run the body, journal it done with what the body recorded."""
        self.journal.step(rec.move_id, name, **data)
        self._emit(rec.move_id, name, "start")
        t = time.monotonic()
        made: dict[str, Any] = {}
        try:
            yield made
        except BaseException as exc:
            timings[name] = timings.get(name, 0.0) + time.monotonic() - t
            self._emit(rec.move_id, name, "failed", int(made.get("bytes", 0)), message=_reason(exc))
            raise
        timings[name] = timings.get(name, 0.0) + time.monotonic() - t
        self.journal.done(rec.move_id, name, **made)
        self._emit(rec.move_id, name, "done", int(made.get("bytes", 0)))

    def _run_steps(
        self, rec: MoveRecord, attrs: dict[str, Any], plan: MovePlan, res: MoveResult
    ) -> None:
        api_src, api_dst = self.src.client.api, self.dst.client.api
        timings = res.timings
        self.journal.step(rec.move_id, "precheck")
        self.journal.done(rec.move_id, "precheck")
        image = self._commit_step(rec, plan, timings) if plan.commit else plan.image
        self._image_step(rec, plan, image, res)
        new_id = self._create_step(rec, attrs, plan, image, res)
        sizes = self._volume_sizes(plan) if plan.volumes else {}
        if plan.was_running:
            with self._step(rec, "stop", timings, timeout=self.stop_timeout):
                api_src.stop(plan.container_id, timeout=self.stop_timeout)
        if plan.volumes:
            self._copy_step(rec, plan, new_id, sizes, res)
        if plan.was_running:
            with self._step(rec, "start", timings, id=new_id):
                api_dst.start(new_id)
            with self._step(rec, "verify", timings, id=new_id):
                self._verify(new_id)
        self._finish(rec, plan, res, timings)

    def _commit_step(self, rec: MoveRecord, plan: MovePlan, timings: dict[str, float]) -> str:
        """Commit the source's file changes to a new image; its ref (the plan follows it)."""
        api_src = self.src.client.api
        tag = rec.move_id[:12]
        repo = f"{COMMIT_REPO}/{plan.container}"
        with self._step(rec, "commit", timings, image_ref=f"{repo}:{tag}") as made:
            out = api_src.commit(
                plan.container_id, repository=repo, tag=tag, message=f"llmaos move {rec.move_id}"
            )
            image_id = str(out["Id"])
            made["image_id"] = image_id
        image = f"{repo}:{tag}"
        plan.image, plan.image_id = image, image_id
        plan.image_size = int(api_src.inspect_image(image_id).get("Size") or 0)
        return image

    def _image_step(self, rec: MoveRecord, plan: MovePlan, image: str, res: MoveResult) -> None:
        """The image: streamed while the source still serves (or only tagged when the target
        has it)."""
        timings = res.timings
        if self._dst_has_image(plan.image_id):
            self._emit(rec.move_id, "image", "skip", message="the target has the image")
            with self._step(rec, "image", timings, load=False, image_id=plan.image_id):
                if image != plan.image_id and self._tag_on(self.dst.client, image) is None:
                    self._tag(self.dst.client.api, plan.image_id, image, rec)
            return
        # Save by tag only when it names this image on the target too (or nothing):
        # `load` would otherwise move the target's tag off the image it names now.
        ref = image if image != plan.image_id else plan.image_id
        with self._step(rec, "image", timings, load=True, image_id=plan.image_id, ref=ref) as made:
            res.image_bytes = self._stream_image(ref, plan.image_size, made)
            if not self._dst_has_image(plan.image_id):
                raise MoveError(f"{self.dst.name} did not get image {plan.image_id[:19]}")

    def _create_step(
        self, rec: MoveRecord, attrs: dict[str, Any], plan: MovePlan, image: str, res: MoveResult
    ) -> str:
        """Volumes, then the container (not started), while the source still serves: a
        create the target refuses then costs no downtime, and the service is down only for
        the stop, the data copy and the start. The new container's id."""
        api_src, api_dst = self.src.client.api, self.dst.client.api
        with self._step(rec, "create", res.timings, container=plan.container) as made:
            for v in plan.volumes:
                if v["anonymous"]:
                    continue  # made with the container, as on the source
                self.journal.step(rec.move_id, "create_volume", volume=v["name"])
                info = api_src.inspect_volume(v["name"])
                api_dst.create_volume(
                    v["name"],
                    driver=v["driver"],
                    driver_opts=info.get("Options") or None,
                    labels=info.get("Labels") or None,
                )
            config = self._create_config(attrs, image)
            new_id = str(api_dst.create_container_from_config(config, name=plan.container)["Id"])
            made["id"] = res.new_id = new_id
            made["networks"] = self._connect_networks(attrs, new_id)
        return new_id

    def _copy_step(
        self, rec: MoveRecord, plan: MovePlan, new_id: str, sizes: dict[str, int], res: MoveResult
    ) -> None:
        """The volumes' data, from the stopped source into the created target."""
        dests = [v["dest"] for v in plan.volumes]
        with self._step(rec, "copy", res.timings, volumes=dests) as made:
            made["bytes"] = 0
            known = len(sizes) == len(plan.volumes)
            total = sum(sizes.values()) if known else None
            for v in plan.volumes:
                self._copy_volume(plan.container_id, new_id, v["dest"], made, total)
            res.volume_bytes = made["bytes"]

    def _tag(self, api: Any, image_id: str, ref: str, rec: MoveRecord) -> None:
        repo, _, tag = ref.rpartition(":")
        if not repo or "/" in tag:  # "host:5000/name" has no tag
            repo, tag = ref, "latest"
        self.journal.step(rec.move_id, "tag", tagged=f"{repo}:{tag}")
        api.tag(image_id, repo, tag)

    def _stream_image(self, ref: str, size: int, made: dict[str, Any]) -> int:
        """Pipe the source's ``save`` of ``ref`` into the target's ``load``; return the bytes
        the target took (``made["bytes"]`` counts them as they go)."""
        made["bytes"] = 0

        def written(n: int) -> None:
            made["bytes"] = n
            self._emit("", "image", "bytes", n, size or None)

        res = open_image_save(self.src.client.api, ref)
        with Pipe(res, on_written=written) as pipe:
            load_image(self.dst.client.api, pipe.body())
            if not pipe.eof:
                raise MoveError("the source's image stream ended early")
        made["bytes"] = pipe.written
        return pipe.written

    def _volume_sizes(self, plan: MovePlan) -> dict[str, int]:
        """The source's volumes' sizes (``docker system df``), for the copy's progress; {}
        when the engine does not say."""
        out: dict[str, int] = {}
        with contextlib.suppress(Exception):
            for v in self.src.client.api.df().get("Volumes") or []:
                size = int((v.get("UsageData") or {}).get("Size") or -1)
                if size >= 0:
                    out[str(v.get("Name"))] = size
        return {v["dest"]: out[v["name"]] for v in plan.volumes if v["name"] in out}

    def _copy_volume(
        self, src_id: str, dst_id: str, dest: str, made: dict[str, Any], total: int | None
    ) -> None:
        """Stream one volume's data from the source container to the target, adding what
        the target took to ``made["bytes"]``.

        ``get_archive`` names the tar's top entry after the path's last part, so it is put
        into the parent directory, landing exactly on the mount point."""
        before = int(made["bytes"])

        def written(n: int) -> None:
            made["bytes"] = before + n
            # tar headers make the stream a little larger than the files it carries
            shown = max(total, before + n) if total is not None else None
            self._emit("", "copy", "bytes", before + n, shown)

        parent = posixpath.dirname(dest.rstrip("/")) or "/"
        res = open_archive(self.src.client.api, src_id, dest)
        with Pipe(res, on_written=written) as pipe:
            put_archive(self.dst.client.api, dst_id, parent, pipe.body())
            if not pipe.eof:
                raise MoveError(f"the source's archive of {dest} ended early")
        made["bytes"] = before + pipe.written

    @staticmethod
    def _endpoints(attrs: dict[str, Any]) -> tuple[str | None, dict[str, dict[str, Any]]]:
        """The user-defined networks the source is on, with aliases and fixed addresses, and
        which of them the container is created on (the engine takes one at create)."""
        hc = attrs.get("HostConfig") or {}
        nets = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
        mode = str(hc.get("NetworkMode") or "")
        short_id = str(attrs.get("Id", ""))[:12]
        endpoints = {}
        for net, ep in nets.items():
            if net in _DEFAULT_NETWORKS:
                continue
            endpoints[net] = {
                "Aliases": [a for a in ep.get("Aliases") or [] if a != short_id],
                "IPAMConfig": ep.get("IPAMConfig"),
            }
        if not endpoints or mode in _DEFAULT_NETWORKS:
            return None, endpoints
        return (mode if mode in endpoints else next(iter(endpoints))), endpoints

    @classmethod
    def _create_config(cls, attrs: dict[str, Any], image: str) -> dict[str, Any]:
        """The create request that gives the target the source's configuration."""
        cfg = dict(attrs.get("Config") or {})
        cfg["Image"] = image
        if cfg.get("Hostname") == str(attrs.get("Id", ""))[:12]:
            del cfg["Hostname"]  # docker's default (the id): let the new id name it
        hc = dict(attrs.get("HostConfig") or {})
        cfg["HostConfig"] = hc
        first, endpoints = cls._endpoints(attrs)
        if first is not None:
            cfg["NetworkingConfig"] = {"EndpointsConfig": {first: endpoints[first]}}
        return cfg

    def _connect_networks(self, attrs: dict[str, Any], new_id: str) -> list[str]:
        """Join the created target to the source's other user-defined networks (before it
        starts, so it never runs half-connected); return their names."""
        first, endpoints = self._endpoints(attrs)
        joined = []
        for net, ep in endpoints.items():
            if net == first:
                continue
            ipam = ep.get("IPAMConfig") or {}
            self.dst.client.api.connect_container_to_network(
                new_id,
                net,
                aliases=ep["Aliases"] or None,
                ipv4_address=ipam.get("IPv4Address") or None,
                ipv6_address=ipam.get("IPv6Address") or None,
            )
            joined.append(net)
        return joined

    def _verify(self, new_id: str) -> None:
        """Running for ``settle`` seconds without a restart, and healthy if it has a check."""
        api = self.dst.client.api
        start = time.monotonic()
        first = api.inspect_container(new_id)
        restarts = int(first.get("RestartCount") or 0)
        has_health = bool(((first.get("Config") or {}).get("Healthcheck") or {}).get("Test"))
        has_health = has_health and first["Config"]["Healthcheck"]["Test"] != ["NONE"]
        deadline = start + max(self.settle, self.health_timeout if has_health else 0)
        while True:
            now_attrs = api.inspect_container(new_id)
            st = now_attrs.get("State") or {}
            if not st.get("Running") or st.get("Restarting"):
                raise MoveError(
                    f"the target container is {st.get('Status')} (exit code "
                    f"{st.get('ExitCode')}){self._log_tail(new_id)}"
                )
            if int(now_attrs.get("RestartCount") or 0) != restarts:
                raise MoveError(f"the target container restarted{self._log_tail(new_id)}")
            health = str((st.get("Health") or {}).get("Status") or "")
            if health == "unhealthy":
                raise MoveError(f"the target container is unhealthy{self._log_tail(new_id)}")
            now = time.monotonic()
            settled = now - start >= self.settle
            if settled and (not has_health or health == "healthy"):
                return
            if now > deadline:
                raise MoveError(
                    f"the target container is not healthy after "
                    f"{self.health_timeout:.0f} s (health: {health or 'none'})"
                )
            time.sleep(0.2)

    def _log_tail(self, cid: str) -> str:
        with contextlib.suppress(Exception):
            out = self.dst.client.api.logs(cid, tail=5).decode(errors="replace").strip()
            if out:
                return f"; its last output: {out[-400:]}"
        return ""

    def _finish(
        self, rec: MoveRecord, plan: MovePlan, res: MoveResult, timings: dict[str, float]
    ) -> None:
        api_src = self.src.client.api
        if plan.keep_source:
            kept = f"{plan.container}.moved-{rec.move_id[:8]}"
            with (
                self._step(rec, "finish", timings, keep=True, renamed=kept),
                contextlib.suppress(docker.errors.NotFound),
            ):
                # a kept copy must not come back up with its engine: no second instance
                api_src.update_container(plan.container_id, restart_policy={"Name": "no"})
                if api_src.inspect_container(plan.container_id)["Name"] != f"/{kept}":
                    api_src.rename(plan.container_id, kept)
        else:
            with self._step(rec, "finish", timings, keep=False) as made:
                with contextlib.suppress(docker.errors.NotFound):
                    api_src.remove_container(plan.container_id, v=True, force=True)
                kept_volumes = []
                for v in plan.volumes:
                    if v["anonymous"]:
                        continue
                    try:
                        api_src.remove_volume(v["name"])
                    except docker.errors.NotFound:
                        pass
                    except docker.errors.APIError:
                        kept_volumes.append(v["name"])  # another container still uses it
                made["kept_volumes"] = kept_volumes
        if plan.commit:
            with contextlib.suppress(docker.errors.APIError):
                api_src.remove_image(plan.image)  # the tag only: the target has the image
        res.outcome = "moved"
        res.new_id = res.new_id or self._target_id(plan.container)
        res.message = f"{plan.container} moved from {self.src.name} to {self.dst.name}" + (
            f" (source kept stopped as {plan.container}.moved-{rec.move_id[:8]})"
            if plan.keep_source
            else ""
        )
        self.journal.end(rec.move_id, "moved", new_id=res.new_id)
        self._audit(plan, res, "ok", rec.move_id)

    def _target_id(self, name: str) -> str | None:
        for c in self.dst.client.api.containers(all=True, filters={"name": f"^/{name}$"}):
            return str(c["Id"])
        return None

    def _audit(
        self,
        plan: MovePlan,
        res: MoveResult | None,
        result: str,
        move_id: str | None,
        *,
        seen: str | None = None,
    ) -> None:
        """One audit line; ``after`` is the state observed on the engine (``seen``, or
        inspected here), never the one hoped for."""
        after = None
        if res is not None and res.outcome == "moved":
            state = self._observe(self.dst.client.api, res.new_id) if res.new_id else "unknown"
            after = {"host": self.dst.name, "id": res.new_id, "state": state}
        elif res is not None:
            state = seen or self._observe(self.src.client.api, plan.container_id)
            after = {"host": self.src.name, "id": plan.container_id, "state": state}
        self.audit.append(
            action=AUDIT_ACTION,
            host=self.src.name,
            target=plan.container,
            before={
                "host": self.src.name,
                "id": plan.container_id,
                "state": "running" if plan.was_running else "stopped",
            },
            after=after,
            result=result,
            operator=self.operator,
            to_host=self.dst.name,
            move_id=move_id,
            image_bytes=res.image_bytes if res else 0,
            volume_bytes=res.volume_bytes if res else 0,
        )

    @staticmethod
    def _observe(api: Any, cid: str) -> str:
        """The container's state as its engine reports it now ("running", "exited"...), or
        what stopped us from seeing it."""
        try:
            st = api.inspect_container(cid).get("State") or {}
        except docker.errors.NotFound:
            return "gone"
        except Exception as exc:  # noqa: BLE001 - what stopped us from seeing it is the answer
            return f"unknown (cannot inspect it: {_reason(exc)})"
        if st.get("Running") and not st.get("Restarting"):
            return "running"
        return str(st.get("Status") or "unknown")
