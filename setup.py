"""Installs senm_plugin and the `basicsr` console command."""
import os

from setuptools import find_packages, setup

here = os.path.dirname(os.path.abspath(__file__))
version = {}
with open(os.path.join(here, 'senm_plugin', 'version.py')) as f:
    exec(f.read(), version)
with open(os.path.join(here, 'README.md'), encoding='utf-8') as f:
    long_description = f.read()

setup(
    name='senm-plugin',
    version=version['__version__'],
    description='SeNM-VAE noise modelling and the ScaoedNet denoiser as a BasicSR plugin',
    long_description=long_description,
    long_description_content_type='text/markdown',
    # options/ ships inside the package as senm_plugin.options too, so `basicsr demo` finds its templates in a wheel
    packages=find_packages(include=['senm_plugin', 'senm_plugin.*']) + ['senm_plugin.options'],
    package_dir={'senm_plugin.options': 'options'},
    package_data={
        'senm_plugin.ops': ['csrc/*.cpp'],  # compiled on first use (senm_plugin/ops/winograd.py)
        'senm_plugin.options': ['*/*.yml'],
    },
    python_requires='>=3.8',
    install_requires=[
        'torch>=1.13',
        'torchvision',
        'basicsr>=1.4.2',
        'mmengine',
        'lmdb',
        'opencv-python',
        'lpips',
        'safetensors',
        'addict',
        'pyyaml',
        'tqdm',
        'numpy',
        'scipy',
        'scikit-image',
        'Pillow',
        'matplotlib',
        'ninja',  # torch.utils.cpp_extension builds the CPU Winograd kernel with it
    ],
    extras_require={'test': ['pytest', 'onnx', 'onnxruntime'], 'onnx': ['onnx', 'onnxruntime']},
    entry_points={'console_scripts': ['basicsr=senm_plugin.cli:main']},
    license='Apache-2.0',
)
