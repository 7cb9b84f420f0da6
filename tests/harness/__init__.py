"""What only the tests start: none of it is needed to run the platform.

    docker/           a private Docker engine (Debian's dockerd), the stand-in
                      python:<version>-slim-bookworm base image, Docker Compose
    kube_apiserver.py etcd and kube-apiserver on loopback, for server-side dry runs
    helm.py           Helm and kubeconform, the offline checkers of the charts
    kubernetes.py     those built before the tests, with progress lines
    actionlint.py     the GitHub Actions workflow checker
    prebuild.py       the servers and these tools (not the stand-in image), built
                      before `make test` starts pytest, with progress lines

They build with platform_native.build into the same cache
(~/.cache/event-platform) as the platform's servers, under the same names and
versions, so a cached build is found wherever its recipe lives. infrastructure/
holds exactly what ./deploy-all.sh runs.
"""
