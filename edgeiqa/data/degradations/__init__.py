"""Degradation library: KADID-10k's 25 types in 7 groups plus camera-pipeline chains.

Importing this package registers its kinds in `edgeiqa.data.distortions.DISTORTIONS` beside the
sample-v1 ladder's nine. The sample set builder (`edgeiqa.data.sample`), ranking pre-training and
`edgeiqa data kinds` import it. One file per group; `groups` holds the group table.
"""

from edgeiqa.data.degradations import (  # noqa: F401
    blur, brightness, camera, color, compression, noise, sharpness, spatial,
)
from edgeiqa.data.degradations.groups import (  # noqa: F401
    GROUPS, describe_kinds, group_names, group_of, kinds_in_group, select_kinds,
)
