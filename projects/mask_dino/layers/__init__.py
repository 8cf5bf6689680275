
from .blockwise_ffn import BlockwiseFFN  # noqa: F401
from .denoising import DNLayout, MaskDINODenoisingGenerator  # noqa: F401
from .msda import (FastMultiScaleDeformableAttention,  # noqa: F401
                   multi_scale_deformable_attn_fast)
from .pixel_decoder import MaskDINOPixelDecoder  # noqa: F401
from .transformer_decoder import MaskDINOTransformerDecoder  # noqa: F401
from .transformer_layers import (MaskDINODecoderLayer,  # noqa: F401
                                 MaskDINOEncoderLayer,
                                 MaskDINOTransformerEncoder)
