from setuptools import find_packages, setup

setup(
    name="recbole-kgin",
    version="0.1.0",
    description="KGIN (Knowledge Graph-based Intent Network, WWW 2021) as a RecBole plugin, "
    "with dataset conversion, baseline comparison and Ray Tune search",
    packages=find_packages(include=["recbole_kgin", "recbole_kgin.*"]),
    python_requires=">=3.9,<3.13",
    install_requires=[
        "torch>=2.0",
        "recbole==1.2.1",
        "ray[tune]>=2.3,<=2.6.3",
        "numpy<2",
        "pandas<3",
        "scipy<1.12",
        "pyarrow<18",
        "setuptools<81",
        "matplotlib",
    ],
    entry_points={"console_scripts": ["recbole-kgin=recbole_kgin.cli:main"]},
)
