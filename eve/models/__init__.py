"""Networks and their loading: the only package that imports diffusers, transformers and peft."""

from eve.models.composed import ROLE_SWITCHES, Cond, EveModel, Role, Switches
from eve.models.known import Known

__all__ = ["Cond", "EveModel", "Known", "ROLE_SWITCHES", "Role", "Switches"]
