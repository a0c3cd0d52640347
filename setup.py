from setuptools import find_packages, setup

setup(
    name="chatd",
    version="0.1.0",
    description="A chat server daemon on Twisted and Autobahn, go-chat compatible.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    packages=find_packages(include=["chatd", "chatd.*", "bench"]) + ["twisted.plugins"],
    package_data={
        "chatd.storage": ["schema/sqlite/*.sql", "schema/mysql/*.sql"],
        "twisted.plugins": ["chatd_plugin.py"],
    },
    include_package_data=True,
    install_requires=[
        "twisted[tls]>=24.3",
        "autobahn>=23.6",
        "txaio>=23.1",
        "klein>=23.12",
        "pymysql>=1.1",
        "protobuf>=7.35.1,<8",
        "pyjwt>=2.8",
        "service-identity>=24.1",
        "pyopenssl>=24.0",
    ],
    extras_require={
        "test": ["treq>=23.11", "ruff", "grpcio-tools==1.85.1", "pyyaml>=6"],
    },
    entry_points={
        "console_scripts": [
            "chatd=chatd.cli:main",
            "chatd-bench=bench.cli:main",
        ],
    },
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "Topic :: Communications :: Chat",
    ],
)
