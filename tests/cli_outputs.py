"""What the real `pulumi` CLI 3.274.1 prints in the failures the commands must report truthfully.
The fake CLI of tests/test_commands.py answers with these; tests/test_real_cli.py shows the real
CLI printing them, so the two cannot drift apart."""

# `pulumi stack select/output/export --stack <missing>`: exit 6.
STACK_NOT_FOUND_EXIT = 6


def stack_not_found(stack: str) -> str:
    return f"error: no stack named '{stack}' found\n"


# A CLI without its Python language host: `pulumi install` (exit 1) ...
INSTALL_WITHOUT_LANGUAGE_HOST = ("error: load language plugin python: no language plugin 'pulumi-language-python' "
                                 "found in the workspace or on your $PATH\n")
# ... and `pulumi up` or `pulumi preview` (exit 1).
RUN_WITHOUT_LANGUAGE_HOST = ("error: failed to load language plugin python: no language plugin "
                             "'pulumi-language-python' found in the workspace or on your $PATH\n")

# The end of `pulumi install` (exit 1) where the provider plugin cannot be downloaded, here from a
# download URL that answers 404 (a proxy's refusal takes five attempts, and ends "failed all 5
# attempts"): its last line hides the cause on the line before.
def install_fails_to_download(url: str) -> str:
    return (f"error: installing packages: failed to download plugin: docker-5.2.0: 404 HTTP error fetching plugin "
            f"from {url}/pulumi-resource-docker-v5.2.0-linux-amd64.tar.gz\ncontext canceled\n")
