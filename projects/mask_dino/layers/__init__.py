
from .denoising import MaskDINODenoisingGenerator  # noqa: F401
from .pixel_decoder import MaskDINOPixelDecoder  # noqa: F401
from .transformer_decoder import MaskDINOTransformerDecoder  # noqa: F401
