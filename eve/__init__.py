__version__ = "0.1.0"

from eve.utils.threads import fit_torch, set_environment

set_environment()  # before torch and OpenCV load: pools sized to this process's cores, idle workers sleep
fit_torch()
