"""moto's server, checking a SigV4 signature over exactly the headers the client signed.

    python tests/moto_signed_headers.py -H 127.0.0.1 -p PORT   (moto_server's options)

moto recomputes each request's signature with botocore's signer, which leaves User-Agent out
of the signed headers; the AWS SDK for Java v1 under S3A signs it, and AWS accepts any header a
client lists in SignedHeaders. With moto as it is, every S3A request fails the check (403).
This only empties botocore's list of headers never signed, in this server process; who may do
what is still moto's own IAM evaluation.
"""

import sys

import botocore.auth
from moto.server import main

botocore.auth.SIGNED_HEADERS_BLACKLIST = []  # moto hands the signer only the signed headers

if __name__ == "__main__":
    main(sys.argv[1:])
