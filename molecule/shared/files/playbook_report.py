"""Summarise an ansible-playbook run's JSON output (ansible.posix.json
callback) per host: failed tasks with their messages, changed tasks, stats.

  playbook_report.py RUN.json   prints {"HOST": {"failed": [...], "changed": [...], "stats": {...}}}
"""

import json
import sys


def main(path):
    with open(path) as handle:
        text = handle.read()
    report = json.loads(text[text.index("{"):])
    hosts = {}
    for play in report["plays"]:
        for task in play["tasks"]:
            name = task["task"]["name"].split(" : ", 1)[-1]
            for host, result in task["hosts"].items():
                entry = hosts.setdefault(host, {"failed": [], "changed": [], "messages": {}})
                if result.get("failed") and not result.get("ignore_errors"):
                    entry["failed"].append("%s: %s" % (name, str(result.get("msg", ""))[:300]))
                if result.get("changed"):
                    entry["changed"].append(name)
                if "msg" in result and result.get("msg") and name.startswith(("Report ", "Say ")):
                    entry["messages"][name] = result["msg"]
    for host, stats in report["stats"].items():
        hosts.setdefault(host, {"failed": [], "changed": [], "messages": {}})["stats"] = stats
    print(json.dumps(hosts))


if __name__ == "__main__":
    main(sys.argv[1])
