"""Operations, by role: local (this machine, AWS stand-ins), aws (provisioning), sample (demo).

Every command-line tool follows bootstrap.cli (parser, one-line configuration errors).
"""
