"""The molecule scenarios' connection to their podman targets.

containers.podman.podman runs every task as five `podman exec`s (make a
temporary directory, copy the module, chmod it, run it, remove the
directory) and mounts the container's filesystem first, each costing
about 0.2 s here. This one sends the module on the stdin of one
`podman exec -i` (Ansible's pipelining) and mounts only when a file must be
copied, which takes a role run on a deployed host from about 71 s to 41 s
(molecule/README.md has the figures).
Tasks that cannot be pipelined (become through su, file transfers) go the
parent's way.
"""

DOCUMENTATION = """
    name: forkserver_podman
    short_description: Run tasks in a podman container, pipelined
    description:
        - containers.podman.podman, with each module sent on the stdin of C(podman exec -i).
    options:
      remote_addr:
        description: The container's name or ID.
        default: inventory_hostname
        vars:
          - name: ansible_host
          - name: inventory_hostname
          - name: ansible_podman_host
      remote_user:
        description: The user that runs the commands in the container.
        ini:
          - section: defaults
            key: remote_user
        env:
          - name: ANSIBLE_REMOTE_USER
        vars:
          - name: ansible_user
      podman_extra_args:
        description: Extra arguments for the podman command line.
        default: ''
        vars:
          - name: ansible_podman_extra_args
        env:
          - name: ANSIBLE_PODMAN_EXTRA_ARGS
      podman_executable:
        description: The podman executable.
        default: podman
        vars:
          - name: ansible_podman_executable
        env:
          - name: ANSIBLE_PODMAN_EXECUTABLE
      pipelining:
        description: Send each module on stdin (not through become methods that cannot, such as su).
        type: boolean
        default: true
        env:
          - name: ANSIBLE_PIPELINING
        vars:
          - name: ansible_pipelining
"""

import shlex

from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.connection import ConnectionBase, ensure_connect
from ansible_collections.containers.podman.plugins.connection.podman import Connection as PodmanConnection


class Connection(PodmanConnection):
    transport = "forkserver_podman"
    has_pipelining = True

    def _connect(self):
        # The parent mounts the container here, for every task; most tasks
        # copy nothing, so mount only in put_file and fetch_file.
        ConnectionBase._connect(self)
        self._connected = True

    def _mount(self):
        if self._mount_point is None:
            PodmanConnection._connect(self)

    @ensure_connect
    def exec_command(self, cmd, in_data=None, sudoable=False):
        if in_data is None:
            return super().exec_command(cmd, in_data=None, sudoable=sudoable)
        # Pipelined: plain podman exec would not pass stdin on, -i does.
        ConnectionBase.exec_command(self, cmd, in_data=in_data, sudoable=sudoable)
        args = ["exec", "-i"] + (["--user", self.user] if self.user else [])
        return self._podman(args, shlex.split(to_native(cmd, errors="surrogate_or_strict")), in_data)

    def put_file(self, in_path, out_path):
        self._mount()
        return super().put_file(in_path, out_path)

    def fetch_file(self, in_path, out_path):
        self._mount()
        return super().fetch_file(in_path, out_path)
