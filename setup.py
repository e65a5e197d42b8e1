from setuptools import find_packages, setup

# Lower bounds: the oldest versions this package has been verified with (Python 3.11: torch 2.13,
# NumPy 1.26, SciPy 1.11, pandas 2.3, Ray 2.6.3); requirements.txt holds the current verified pins.
# RecBole 1.2.1 declares ray<=2.6.3 and colorama==0.4.4, which no Python >= 3.12 install can meet:
# install it with `pip install --no-deps recbole==1.2.1` (see README, "Quick start").
setup(
    name="recbole-kgin",
    version="0.1.0",
    description="KGIN (Knowledge Graph-based Intent Network, WWW 2021) as a RecBole plugin, "
    "with dataset conversion, baseline comparison and Ray Tune search",
    packages=find_packages(include=["recbole_kgin", "recbole_kgin.*"]),
    python_requires=">=3.11,<3.14",
    install_requires=[
        "recbole==1.2.1",
        "torch>=2.13",
        "numpy>=1.26",
        "scipy>=1.11",
        "pandas>=2.3,<3",
        "ray[tune]>=2.6.3",
        "pyarrow",
        "matplotlib",
    ],
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
    ],
    entry_points={"console_scripts": ["recbole-kgin=recbole_kgin.cli:main"]},
)
