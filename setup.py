"""Maps each top-level folder to a subpackage of the one import root `dockyard`."""

from setuptools import find_packages, setup

ROOTS = {
    "dockyard": "src/dockyard",
    "dockyard.apid": "apid",
    "dockyard.managerd": "managerd",
    "dockyard.shim": "shim",
    "dockyard.protos": "protos",
    "dockyard.client": "client",
}

packages = []
for name, path in ROOTS.items():
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_packages(path)]

setup(
    packages=packages,
    package_dir=ROOTS,
    package_data={"": ["*.json", "*.proto", "*.sql", "*.sh"]},
)
