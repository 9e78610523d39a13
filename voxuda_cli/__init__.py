"""voxuda: voxel-wise unsupervised domain adaptation (Vox-UDA) for cryo-ET subtomogram segmentation."""

__version__ = "0.1.0"
