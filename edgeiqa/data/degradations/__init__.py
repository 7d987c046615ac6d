"""Degradation library: KADID-10k's 25 types in 7 groups plus camera-pipeline chains.

Importing this package registers its kinds in `edgeiqa.data.distortions.DISTORTIONS` beside the sample
ladder's nine (nothing else imports it yet, so the sample set and `random_degradation`'s default pool are
unchanged until a caller imports it). One file per group; `groups` holds the group table.
"""

from edgeiqa.data.degradations import (  # noqa: F401
    blur, brightness, camera, color, compression, noise, sharpness, spatial,
)
from edgeiqa.data.degradations.groups import GROUPS, describe_kinds, group_names, group_of, kinds_in_group  # noqa: F401
