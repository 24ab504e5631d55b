"""Real colour photos that install with a package, nothing downloaded: the sources of the paired sets.

Three collections (``list_sources`` names each image and the *group* it is split by):

- ``skimage``: the colour photos bundled in scikit-image's wheel (``skimage.data``; only bundled files are
  read, never the ones ``skimage.data`` fetches with pooch): astronaut, chelsea, coffee, hubble_deep_field,
  immunohistochemistry, retina, rocket. Each is its own group. The grey ones (brick, camera, coins, grass,
  gravel, moon, page, text) and the drawings (colorwheel, logo, horse) are left out: a target must be a
  colour photo.
- ``opencv``: 29 colour stills of the Debian package ``opencv-doc`` (``/usr/share/doc/opencv-doc/examples/
  data``; drawings, logos, charts, text pages and grey calibration shots are left out). Two views of one
  scene (``aloeL``/``aloeR``, ``leuvenA``/``leuvenB``, ...) form one group.
- ``opencv/vtest.avi`` (795 frames, 768x576, a fixed camera over a path with pedestrians) and
  ``opencv/tree.avi`` (68 frames, 320x240, a tree in the wind) of the same package, decoded with PyAV. Every
  ``step``-th frame is kept (25 and 4 by default: 32 and 17 frames) so that kept frames are not
  near-duplicates; consecutive blocks of ``segment`` frames (100 and 17) are the groups, so all frames of a
  block go to one split. vtest's background is the same in every frame: its val and test frames
  have new people in them, not a new scene.

Where ``/usr/share/doc`` is excluded from the install (dpkg path-excludes in slim images), the files of
``apt-get download opencv-doc && dpkg-deb -x opencv-doc_*.deb $KD_DATA_HOME/opencv-doc`` are found too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from kd_core import datacache
from kd_core.errors import ConfigError, DataError

from kd_generative.data.video import count_frames, read_frames

__all__ = ["OPENCV_DATA", "OPENCV_STILLS", "SKIMAGE_PHOTOS", "VIDEOS", "PhotoSource", "VideoPlan", "list_sources",
           "load_photos", "opencv_data_dir", "source_fingerprint"]

#: Where the Debian package ``opencv-doc`` puts its sample data.
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
_DEB_SUBDIR = Path("usr/share/doc/opencv-doc/examples/data")

#: The bundled colour photos of ``skimage.data`` and their licences (from each function's docstring).
SKIMAGE_PHOTOS: dict[str, str] = {
    "astronaut": "public domain (NASA)",
    "chelsea": "CC0 (Stefan van der Walt)",
    "coffee": "CC0 (Rachel Michetti)",
    "hubble_deep_field": "public domain (NASA)",
    "immunohistochemistry": "no known copyright restrictions",
    "retina": "CC0 (Mikael Häggström)",
    "rocket": "public domain (SpaceX)",
}

#: The colour stills of ``opencv-doc`` used as photos, each with its group (two views of a scene share one).
OPENCV_STILLS: dict[str, str] = {
    "aero1.jpg": "aero", "aero3.jpg": "aero", "aloeL.jpg": "aloe", "aloeR.jpg": "aloe", "apple.jpg": "apple",
    "baboon.jpg": "baboon", "board.jpg": "board", "building.jpg": "building", "butterfly.jpg": "butterfly",
    "chicky_512.png": "chicky", "ela_modified.jpg": "ela", "ela_original.jpg": "ela", "fruits.jpg": "fruits",
    "graf1.png": "graf", "graf3.png": "graf", "home.jpg": "home", "left.jpg": "left-right",
    "right.jpg": "left-right", "leuvenA.jpg": "leuven", "leuvenB.jpg": "leuven",
    "licenseplate_motion.jpg": "licenseplate", "messi5.jpg": "messi", "orange.jpg": "orange",
    "rubberwhale1.png": "rubberwhale", "rubberwhale2.png": "rubberwhale", "smarties.png": "smarties",
    "squirrel_cls.jpg": "squirrel", "starry_night.jpg": "starry-night", "stuff.jpg": "stuff",
}


@dataclass(frozen=True)
class VideoPlan:
    """Which frames of a video are kept (every ``step``-th) and how many frames make one split group."""

    step: int
    segment: int


#: The ``opencv-doc`` videos used (``Megamind.avi`` is not: it is kept for other tasks).
VIDEOS: dict[str, VideoPlan] = {"vtest.avi": VideoPlan(step=25, segment=100),
                                "tree.avi": VideoPlan(step=4, segment=17)}


@dataclass(frozen=True)
class PhotoSource:
    """One image pairs are cut from: its ``name``, the ``group`` splits keep together, and where it lives.

    ``path`` is the file (``None`` for ``skimage.data``); ``frame`` the frame index in a video, else ``None``.
    """

    name: str
    group: str
    collection: str
    path: Path | None = None
    frame: int | None = None


def opencv_data_dir(opencv_dir: str | Path | None = None) -> Path:
    """The folder holding opencv-doc's sample data: ``opencv_dir`` if given, else the installed package's,
    else one extracted from the .deb under ``$KD_DATA_HOME/opencv-doc``; :class:`DataError` if none exists."""
    if opencv_dir is not None:
        candidates = [Path(opencv_dir)]
    else:
        candidates = [OPENCV_DATA, datacache.data_home() / "opencv-doc" / _DEB_SUBDIR]
    for candidate in candidates:
        if (candidate / "fruits.jpg").is_file():
            return candidate
    raise DataError("opencv_dir", "a folder holding opencv-doc's examples/data (fruits.jpg, vtest.avi, ...)",
                    ", ".join(str(c) for c in candidates),
                    hint="apt-get install opencv-doc (or apt-get download opencv-doc && dpkg-deb -x "
                         "opencv-doc_*.deb $KD_DATA_HOME/opencv-doc)")


def _collections() -> list[str]:
    return ["skimage", "opencv", *(f"opencv/{video}" for video in VIDEOS)]


def _video_sources(directory: Path, video: str, step: int, segment: int) -> list[PhotoSource]:
    path = directory / video
    if not path.is_file():
        raise DataError("opencv_dir", f"{video} of opencv-doc in {directory}", "no such file",
                        hint="apt-get install --reinstall opencv-doc")
    total = count_frames(path)
    sources = []
    for frame in range(0, total, step):
        start = frame // segment * segment
        group = f"opencv/{video}[{start:04d}-{min(start + segment, total) - 1:04d}]"
        sources.append(PhotoSource(f"opencv/{video}#{frame:04d}", group, f"opencv/{video}", path, frame))
    return sources


def list_sources(sources: Sequence[str] | None = None, *, frame_step: int | None = None,
                 opencv_dir: str | Path | None = None) -> list[PhotoSource]:
    """The photos named by ``sources`` (default: every collection), in a fixed order.

    Each entry of ``sources`` is a collection (``"skimage"``, ``"opencv"`` for the stills,
    ``"opencv/vtest.avi"``, ``"opencv/tree.avi"``) or one photo (``"skimage/astronaut"``,
    ``"opencv/fruits.jpg"``). ``frame_step`` replaces every video's own step (see :data:`VIDEOS`).
    """
    if isinstance(sources, str):
        raise ConfigError("sources", "a list of collection or photo names", sources)
    if frame_step is not None and (isinstance(frame_step, bool) or not isinstance(frame_step, int)
                                   or frame_step < 1):
        raise ConfigError("frame_step", "an integer >= 1 or None", frame_step)
    wanted = list(_collections()) if sources is None else list(dict.fromkeys(sources))
    stills = {f"skimage/{n}": "skimage" for n in SKIMAGE_PHOTOS} | {f"opencv/{n}": "opencv" for n in OPENCV_STILLS}
    unknown = [w for w in wanted if w not in stills and w not in _collections()]
    if unknown or not wanted:
        raise ConfigError("sources", "collections (" + ", ".join(_collections()) + ") or photo names such as "
                          "'skimage/astronaut' or 'opencv/fruits.jpg'", unknown or wanted)
    directory = opencv_data_dir(opencv_dir) if any(w.startswith("opencv") for w in wanted) else None
    picked: list[PhotoSource] = []
    for name in SKIMAGE_PHOTOS:
        if "skimage" in wanted or f"skimage/{name}" in wanted:
            picked.append(PhotoSource(f"skimage/{name}", f"skimage/{name}", "skimage"))
    for name, group in OPENCV_STILLS.items():
        if "opencv" in wanted or f"opencv/{name}" in wanted:
            assert directory is not None
            picked.append(PhotoSource(f"opencv/{name}", f"opencv/{group}", "opencv", directory / name))
    for video, plan in VIDEOS.items():
        if f"opencv/{video}" in wanted:
            assert directory is not None
            picked.extend(_video_sources(directory, video, frame_step or plan.step, plan.segment))
    return picked


def _read_still(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, UnidentifiedImageError) as error:
        raise DataError("opencv_dir", f"a readable image at {path}", f"{type(error).__name__}: {error}",
                        hint="apt-get install --reinstall opencv-doc") from error


def load_photos(sources: Sequence[PhotoSource]) -> list[np.ndarray]:
    """The pixels of ``sources``, in order, as uint8 RGB arrays ``(H, W, 3)`` (each video decoded once)."""
    frames: dict[Path, dict[int, np.ndarray]] = {}
    for path in dict.fromkeys(s.path for s in sources if s.frame is not None):
        assert path is not None
        frames[path] = read_frames(path, [s.frame for s in sources if s.path == path and s.frame is not None])
    images = []
    for source in sources:
        if source.frame is not None and source.path is not None:
            images.append(frames[source.path][source.frame])
        elif source.path is not None:
            images.append(_read_still(source.path))
        else:
            import skimage.data

            image = getattr(skimage.data, source.name.split("/", 1)[1])()
            images.append(np.ascontiguousarray(image[..., :3], dtype=np.uint8))
    return images


def source_fingerprint(sources: Sequence[PhotoSource]) -> dict[str, str]:
    """What the pixels of ``sources`` depend on: each file's SHA-256 and the versions of the readers."""
    from importlib.metadata import version

    files = sorted({s.path for s in sources if s.path is not None})
    record = {f"file:{p.name}": datacache.file_sha256(p) for p in files}
    readers = ["scikit-image", "pillow"] + (["av"] if any(s.frame is not None for s in sources) else [])
    for package in readers:
        record[f"version:{package}"] = version(package)
    return record
