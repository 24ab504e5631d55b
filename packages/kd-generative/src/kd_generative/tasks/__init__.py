"""Image-to-image tasks for studies (``kd_core.task.Task``): paired data from the built-in sets or a user's
folders (``config``, ``splits``), a Pix2Pix teacher trained here and cached (``teacher``), and scores against the
targets and the teacher (``evaluate``); ``image_task`` puts them together; ``baselines``: the trivial baselines and
the gate. Talking faces: ``talking`` (``talking_task``) over ``talking_config``, ``talking_data``,
``talking_teacher`` and ``talking_eval``."""

from kd_generative.tasks.config import GanConfig, GeneratorConfig, PairedData
from kd_generative.tasks.image2image import check_geometry, image_task
from kd_generative.tasks.teacher import TeacherConfig

__all__ = ["GanConfig", "GeneratorConfig", "PairedData", "TeacherConfig", "check_geometry", "image_task"]
