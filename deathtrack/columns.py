"""Column names of every table deathtrack reads or writes, in one place.

The outputs folder is a contract (see the README): scripts and notebooks
depend on these names. Units: pixel coordinates ``y, x`` in pixels;
physical coordinates ``y_um, x_um`` in micrometres; areas in µm²; times
``t_s`` in seconds; ``frame`` and ``dt`` in frames.
"""

from __future__ import annotations

# objects / tracks
FRAME = "frame"
LABEL = "label"
TRACK_ID = "track_id"
POPULATION = "population"
Y = "y"
X = "x"
Z = "z"
Y_UM = "y_um"
X_UM = "x_um"
Z_UM = "z_um"
T_S = "t_s"
AREA_UM2 = "area_um2"

# populations
CELLS = "cells"
IMMUNE = "immune"
POPULATIONS = (CELLS, IMMUNE)

# lineage
PARENT_ID = "parent_id"
CHILD_ID = "child_id"

# events
EVENT_ID = "event_id"
MODE = "mode"
P_NECROPTOTIC = "p_necroptotic"
ONSET_FRAME = "onset_frame"
DYE_FRAME = "dye_frame"
REVIEWED_MODE = "reviewed_mode"
REVIEWER = "reviewer"
REVIEWED_AT = "reviewed_at"
REVIEW_COLUMNS = (REVIEWED_MODE, REVIEWER, REVIEWED_AT)
NOT_DEATH = "not_death"  # a reviewer's label: the pipeline's event is not a death
APOPTOTIC = "apoptotic"
NECROPTOTIC = "necroptotic"
UNCERTAIN = "uncertain"
MODES = (APOPTOTIC, NECROPTOTIC, UNCERTAIN)

# recruitment
DT = "dt"
T_REL_S = "t_rel_s"
N_WITHIN_R = "n_within_r"
N_CONTACT = "n_contact"

# channel roles
ROLE_CELLS = "cells"
ROLE_IMMUNE = "immune"
ROLE_DYE = "dye"
ROLE_CASPASE = "caspase"
ROLE_NUCLEI = "nuclei"
ROLES = (ROLE_CELLS, ROLE_IMMUNE, ROLE_DYE, ROLE_CASPASE, ROLE_NUCLEI)
