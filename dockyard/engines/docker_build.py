"""Image builds and pushes on a Docker engine, for `DockerDriver.build_image`/`push_image`.

The engine's classic builder (`POST /build`) is used: it takes the context as a tar, runs each step
in a container with the limits given, removes those containers whatever happens (`forcerm`) and,
when the client goes away, cancels the build. That is how `stop` works: the response's socket is
shut down, the engine sees the client leave and stops the step that runs."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

import requests
import urllib3
from docker import APIClient
from docker import errors as docker_errors
from docker import utils as docker_utils

from dockyard.engines.base import BuildOutput, EngineError, EngineUnavailable, ImageBuild

CPU_PERIOD = 100_000  # µs: the CFS period cpuquota is a share of


def _context_tar(build: ImageBuild) -> tuple[Any, str]:
    """The context directory as a tar file object, and the Dockerfile's name in it (what the
    Docker CLI sends: `.dockerignore` honoured, symbolic links kept as links)."""
    exclude = None
    ignore = os.path.join(build.context, ".dockerignore")
    if os.path.isfile(ignore):
        with open(ignore) as f:
            exclude = [x for x in (line.strip() for line in f.read().splitlines()) if x and not x.startswith("#")]
    # the Dockerfile is inside the context (the model refuses other paths), so it travels in the tar;
    # the tar goes to a file without a name, which a killed server cannot leave behind
    return docker_utils.tar(build.context, exclude=exclude, dockerfile=(build.dockerfile, None),
                            fileobj=tempfile.TemporaryFile()), build.dockerfile


def build_params(build: ImageBuild, dockerfile: str) -> dict[str, Any]:
    params: dict[str, Any] = {
        "t": list(build.tags), "dockerfile": dockerfile, "rm": 1, "forcerm": 1, "pull": 0, "q": 0,
        "memory": build.memory, "memswap": build.memory,
        "cpuperiod": CPU_PERIOD, "cpuquota": max(1000, int(build.cpu * CPU_PERIOD)),
        "buildargs": json.dumps(build.build_args), "labels": json.dumps(build.labels),
    }
    if build.network:
        params["networkmode"] = build.network
    return params


def run_build(api: APIClient, call: Callable[..., Any], abort: Callable[[requests.Response], None],
              build: ImageBuild, stop: threading.Event) -> Iterator[BuildOutput]:
    tar, dockerfile = _context_tar(build)
    try:
        res = call(api._post, api._url("/build"), data=tar, params=build_params(build, dockerfile),
                   headers={"Content-Type": "application/tar"}, stream=True, timeout=None)
        call(api._raise_for_status, res)
    except docker_errors.APIError as e:
        tar.close()
        raise EngineError(f"the engine refused the build: {e.explanation or e}", permanent=True,
                          reason="BuildFailed") from None
    done = threading.Event()
    threading.Thread(target=lambda: (_wait_either(stop, done), stop.is_set() and abort(res)), daemon=True,
                     name="build-closer").start()
    image_id = None
    try:
        for msg in api._stream_helper(res, decode=True):
            if "error" in msg or "errorDetail" in msg:
                detail = (msg.get("errorDetail") or {}).get("message") or msg.get("error") or "the build failed"
                raise EngineError(str(detail).strip(), permanent=True, reason="BuildFailed")
            aux = msg.get("aux")
            if isinstance(aux, dict) and aux.get("ID"):
                image_id = str(aux["ID"])
            text = msg.get("stream") or msg.get("status")
            if text:
                for line in str(text).splitlines():
                    yield BuildOutput(line=line)
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, AttributeError, OSError,
            ValueError) as e:
        if stop.is_set():
            raise EngineError("the build was stopped", permanent=True, reason="BuildStopped") from None
        raise EngineUnavailable(f"the build stream ended: {type(e).__name__}") from None
    finally:
        done.set()
        res.close()
        tar.close()
    if stop.is_set():
        raise EngineError("the build was stopped", permanent=True, reason="BuildStopped")
    if image_id is None:
        raise EngineError("the engine ended the build without an image", permanent=True, reason="BuildFailed")
    yield BuildOutput(line=f"built {image_id}", image_id=image_id)


def _wait_either(stop: threading.Event, done: threading.Event) -> None:
    while not done.is_set() and not stop.wait(0.2):
        pass


def run_push(api: APIClient, call: Callable[..., Any], ref: str, auth: tuple[str, str] | None) -> str:
    repo, _, tag = ref.rpartition(":")
    auth_config = {"username": auth[0], "password": auth[1]} if auth else None
    digest = None
    for msg in call(api.push, repo, tag=tag, auth_config=auth_config, stream=True, decode=True):
        if "error" in msg or "errorDetail" in msg:
            detail = (msg.get("errorDetail") or {}).get("message") or msg.get("error")
            raise EngineError(f"push of {ref} failed: {detail}", permanent=True, reason="PushFailed")
        aux = msg.get("aux")
        if isinstance(aux, dict) and aux.get("Digest"):
            digest = str(aux["Digest"])
    if digest is None:
        raise EngineError(f"push of {ref} ended without a digest", permanent=True, reason="PushFailed")
    return digest
