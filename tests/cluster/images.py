"""The container images of the release manifests, and the built binaries that stand for them.

No image can be pulled here: the test kubelet runs a container of one of these images by running
the binary that ``build.sh`` built from the same release, with Kubernetes' rule for the command
line (``command`` replaces the image's ENTRYPOINT, ``args`` its CMD; the entrypoint's path in the
image is the binary)."""

from __future__ import annotations

from dataclasses import dataclass

from .binaries import Built


@dataclass(frozen=True)
class Image:
    """``reference`` as the release manifests name it; ``entrypoint`` is the image's ENTRYPOINT
    (the path the manifests' ``command`` names too); ``binary`` the host file that stands for it;
    ``user`` the image's USER (uid, gid), which a container runs as unless its securityContext
    says otherwise."""

    reference: str
    entrypoint: tuple[str, ...]
    binary: str
    user: tuple[int, int]

    def argv(self, command: list[str] | None, args: list[str] | None) -> list[str]:
        """The host command line of a container of this image (the image has no CMD)."""
        line = list(command) if command else list(self.entrypoint)
        line += args or []
        if line and line[0] == self.entrypoint[0]:
            line[0] = self.binary
        return line


def release_images(built: Built) -> dict[str, Image]:
    """Image reference → Image, for the versions ``build.sh`` built (both images' Dockerfiles
    say ``ENTRYPOINT ["/manager"]`` and ``USER 65532:65532``, distroless's nonroot)."""
    versions = built.versions
    nonroot = (65532, 65532)
    images = [
        Image(
            f"registry.k8s.io/kueue/kueue:{versions['kueue']}",
            ("/manager",),
            built.binary("kueue"),
            nonroot,
        ),
        Image(
            f"registry.k8s.io/jobset/jobset:{versions['jobset']}",
            ("/manager",),
            built.binary("jobset"),
            nonroot,
        ),
    ]
    return {image.reference: image for image in images}
