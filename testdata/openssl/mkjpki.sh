#!/bin/sh
# mkjpki.sh DIR — build a JPKI-profile PKI with the real openssl binary.
#
# Why: the verifier must accept what a standard toolchain produces, not
# only what our own Go simulator (pkibridge/jpkisim) issues. Every artifact
# here comes from `openssl req/ca/x509/cms/dgst`, so an interop regression
# shows up as a failing test instead of a surprised relying party.
#
# TEST ONLY: nothing here is evidence of anyone's identity. The CA name says
# OPENSSL-TEST and the personal facts are the usual sample values.
#
# Creates in DIR (which must exist or be creatable):
#   openssl.cnf index.txt index.txt.attr serial crlnumber newcerts/
#                     an `openssl ca` database, so tests can -revoke/-gencrl
#   ca.key ca.pem     RSA-2048 self-signed CA with a JPKI-like DN
#   ca2.key ca2.pem   second CA: same DN, another key (a "generation")
#   sign.key sign.pem signature cert (digitalSignature,nonRepudiation;
#                     policy .1.1.20; SAN otherNames .5.5.1-6)
#   auth.key auth.pem authentication cert (digitalSignature; policy .1.3.30)
#   other.key         an uncertified RSA-2048 key
#   weak.key          RSA-1024 key
#   Variants (signature profile unless said; leaf key sign.key unless said):
#     expired.pem notyet.pem weak.pem(weak.key) noku.pem caleaf.pem
#     wrongku.pem critext.pem wrongpolicy.pem badbirth.pem badgender.pem
#     nofacts.pem selfsigned.pem(other.key, self-issued) rogue.pem(by ca2)
#     revoked.pem (revoked in the database) unlisted.pem (auth profile,
#     issued outside the database so OCSP answers "unknown")
#   data.txt          the bytes every signature below covers
#   sign-attached.p7s sign-detached.p7s sign-noattr.p7s auth-attached.p7s
#   auth-detached.p7s sign-sha1.p7s two-signers.p7s   CMS (DER)
#   sign.sig auth.sig raw PKCS#1 v1.5 SHA-256 signatures; sign.sig.b64
#   sign.jws auth.jws compact JWS, RS256 with x5c, signed by openssl dgst
#   crl.pem crl.der   CRL listing revoked.pem, fresh
#   crl-stale.pem     CRL whose nextUpdate is in the past
#   crl-otherkey.pem  CRL with the CA's name but signed by ca2.key
#   crl-otherkey-noaki.pem  the same without authorityKeyIdentifier, so
#                     only the signature tells it apart
set -eu

if [ $# -ne 1 ]; then
	echo "usage: $0 DIR" >&2
	exit 2
fi
DIR=$1
mkdir -p "$DIR"
cd "$DIR"
OPENSSL=${OPENSSL:-openssl}

mkdir -p newcerts
: >index.txt
echo "unique_subject = no" >index.txt.attr
echo 1000 >serial
echo 01 >crlnumber

# The SAN values are UTF-8 in this file; FORMAT:UTF8 makes openssl take
# them as UTF-8 rather than re-encoding each byte as Latin-1.
cat >openssl.cnf <<'EOF'
[ ca ]
default_ca = jpki

[ jpki ]
dir              = .
database         = ./index.txt
new_certs_dir    = ./newcerts
serial           = ./serial
crlnumber        = ./crlnumber
certificate      = ./ca.pem
private_key      = ./ca.key
default_md       = sha256
default_days     = 1825
default_crl_days = 30
policy           = policy_any
unique_subject   = no
copy_extensions  = none
crl_extensions   = crl_ext
email_in_dn      = no

[ policy_any ]
countryName            = optional
stateOrProvinceName    = optional
localityName           = optional
organizationName       = optional
organizationalUnitName = optional
commonName             = supplied

[ req ]
distinguished_name = req_dn
prompt             = no
[ req_dn ]
C = JP

[ crl_ext ]
authorityKeyIdentifier = keyid:always

[ crl_ext_none ]
# no authorityKeyIdentifier: the issuer is found by name only

[ v3_ca ]
basicConstraints       = critical,CA:TRUE
keyUsage               = critical,keyCertSign,cRLSign
subjectKeyIdentifier   = hash

[ sign_facts ]
otherName.1 = 1.2.392.200149.8.5.5.1;FORMAT:UTF8,UTF8:山田　太郎
otherName.2 = 1.2.392.200149.8.5.5.2;FORMAT:UTF8,UTF8:00000
otherName.3 = 1.2.392.200149.8.5.5.3;FORMAT:UTF8,UTF8:1
otherName.4 = 1.2.392.200149.8.5.5.4;FORMAT:UTF8,UTF8:319801231
otherName.5 = 1.2.392.200149.8.5.5.5;FORMAT:UTF8,UTF8:東京都千代田区霞が関二丁目一番二号
otherName.6 = 1.2.392.200149.8.5.5.6;FORMAT:UTF8,UTF8:0000000000000000

[ bad_birth_facts ]
otherName.1 = 1.2.392.200149.8.5.5.1;FORMAT:UTF8,UTF8:山田　太郎
otherName.3 = 1.2.392.200149.8.5.5.3;FORMAT:UTF8,UTF8:1
otherName.4 = 1.2.392.200149.8.5.5.4;FORMAT:UTF8,UTF8:319801341
otherName.5 = 1.2.392.200149.8.5.5.5;FORMAT:UTF8,UTF8:東京都千代田区霞が関二丁目一番二号

[ bad_gender_facts ]
otherName.1 = 1.2.392.200149.8.5.5.1;FORMAT:UTF8,UTF8:山田　太郎
otherName.3 = 1.2.392.200149.8.5.5.3;FORMAT:UTF8,UTF8:9
otherName.4 = 1.2.392.200149.8.5.5.4;FORMAT:UTF8,UTF8:319801231
otherName.5 = 1.2.392.200149.8.5.5.5;FORMAT:UTF8,UTF8:東京都千代田区霞が関二丁目一番二号

[ sign_leaf ]
basicConstraints       = critical,CA:FALSE
keyUsage               = critical,digitalSignature,nonRepudiation
certificatePolicies    = 1.2.392.200149.8.5.1.1.20
subjectAltName         = @sign_facts
authorityKeyIdentifier = keyid
subjectKeyIdentifier   = hash

[ auth_leaf ]
basicConstraints       = critical,CA:FALSE
keyUsage               = critical,digitalSignature
certificatePolicies    = 1.2.392.200149.8.5.1.3.30
authorityKeyIdentifier = keyid
subjectKeyIdentifier   = hash

[ noku_leaf ]
certificatePolicies    = 1.2.392.200149.8.5.1.1.20
subjectAltName         = @sign_facts
authorityKeyIdentifier = keyid

[ caleaf_leaf ]
basicConstraints       = critical,CA:TRUE
keyUsage               = critical,digitalSignature,nonRepudiation
certificatePolicies    = 1.2.392.200149.8.5.1.1.20
subjectAltName         = @sign_facts
authorityKeyIdentifier = keyid

[ wrongku_leaf ]
keyUsage               = critical,keyEncipherment,dataEncipherment
certificatePolicies    = 1.2.392.200149.8.5.1.1.20
subjectAltName         = @sign_facts
authorityKeyIdentifier = keyid

[ critext_leaf ]
keyUsage               = critical,digitalSignature,nonRepudiation
certificatePolicies    = 1.2.392.200149.8.5.1.1.20
subjectAltName         = @sign_facts
authorityKeyIdentifier = keyid
1.3.6.1.4.1.55555.1.1  = critical,ASN1:NULL

[ wrongpolicy_leaf ]
keyUsage               = critical,digitalSignature,nonRepudiation
certificatePolicies    = 1.3.6.1.4.1.55555.2.1
subjectAltName         = @sign_facts
authorityKeyIdentifier = keyid

[ badbirth_leaf ]
keyUsage               = critical,digitalSignature,nonRepudiation
certificatePolicies    = 1.2.392.200149.8.5.1.1.20
subjectAltName         = @bad_birth_facts
authorityKeyIdentifier = keyid

[ badgender_leaf ]
keyUsage               = critical,digitalSignature,nonRepudiation
certificatePolicies    = 1.2.392.200149.8.5.1.1.20
subjectAltName         = @bad_gender_facts
authorityKeyIdentifier = keyid

[ nofacts_leaf ]
keyUsage               = critical,digitalSignature,nonRepudiation
certificatePolicies    = 1.2.392.200149.8.5.1.1.20
authorityKeyIdentifier = keyid

[ selfsigned_leaf ]
keyUsage               = critical,digitalSignature,nonRepudiation
certificatePolicies    = 1.2.392.200149.8.5.1.1.20
subjectAltName         = @sign_facts
EOF

CA_DN="/C=JP/O=JPKI-OPENSSL-TEST/OU=JPKI for digital signature/OU=Japan Agency for Local Authority Information Systems"

key() { "$OPENSSL" genpkey -algorithm RSA -pkeyopt "rsa_keygen_bits:$2" -out "$1" 2>/dev/null; }

key ca.key 2048
key ca2.key 2048
key sign.key 2048
key auth.key 2048
key other.key 2048
key weak.key 1024

"$OPENSSL" req -config openssl.cnf -new -x509 -key ca.key -subj "$CA_DN" \
	-days 3650 -sha256 -extensions v3_ca -out ca.pem
"$OPENSSL" req -config openssl.cnf -new -x509 -key ca2.key -subj "$CA_DN" \
	-days 3650 -sha256 -extensions v3_ca -out ca2.pem

# issue OUT KEY EXT CN [extra openssl ca args...]
issue() {
	out=$1 k=$2 ext=$3 cn=$4
	shift 4
	"$OPENSSL" req -config openssl.cnf -new -key "$k" \
		-subj "/C=JP/L=Tokyo/L=Chiyoda-ku/CN=$cn" -out "$out.csr"
	"$OPENSSL" ca -config openssl.cnf -batch -notext -extensions "$ext" \
		-in "$out.csr" -out "$out" "$@" 2>/dev/null
	rm -f "$out.csr"
}

issue sign.pem sign.key sign_leaf OPENSSL-SIGN-0001
issue auth.pem auth.key auth_leaf OPENSSL-AUTH-0001
issue expired.pem sign.key sign_leaf OPENSSL-SIGN-EXPIRED \
	-startdate 20100101000000Z -enddate 20150101000000Z
issue notyet.pem sign.key sign_leaf OPENSSL-SIGN-NOTYET \
	-startdate 20900101000000Z -enddate 20950101000000Z
issue weak.pem weak.key sign_leaf OPENSSL-SIGN-WEAK
issue noku.pem sign.key noku_leaf OPENSSL-SIGN-NOKU
issue caleaf.pem sign.key caleaf_leaf OPENSSL-SIGN-CALEAF
issue wrongku.pem sign.key wrongku_leaf OPENSSL-SIGN-WRONGKU
issue critext.pem sign.key critext_leaf OPENSSL-SIGN-CRITEXT
issue wrongpolicy.pem sign.key wrongpolicy_leaf OPENSSL-SIGN-WRONGPOLICY
issue badbirth.pem sign.key badbirth_leaf OPENSSL-SIGN-BADBIRTH
issue badgender.pem sign.key badgender_leaf OPENSSL-SIGN-BADGENDER
issue nofacts.pem sign.key nofacts_leaf OPENSSL-SIGN-NOFACTS
issue revoked.pem sign.key sign_leaf OPENSSL-SIGN-REVOKED
# The same database, but signed by the second-generation key: the name
# matches the anchor, the key does not.
issue rogue.pem sign.key sign_leaf OPENSSL-SIGN-ROGUE -cert ca2.pem -keyfile ca2.key

# Self-issued leaf with the full signature profile.
"$OPENSSL" req -config openssl.cnf -new -x509 -key other.key -days 365 -sha256 \
	-subj "/C=JP/L=Tokyo/CN=OPENSSL-SIGN-SELF" -extensions selfsigned_leaf -out selfsigned.pem

# Issued by the CA but outside its database: OCSP knows nothing of it.
"$OPENSSL" req -config openssl.cnf -new -key auth.key \
	-subj "/C=JP/L=Tokyo/CN=OPENSSL-AUTH-UNLISTED" -out unlisted.csr
"$OPENSSL" x509 -req -in unlisted.csr -CA ca.pem -CAkey ca.key -set_serial 0x7e57 \
	-days 365 -sha256 -extfile openssl.cnf -extensions auth_leaf -out unlisted.pem 2>/dev/null
rm -f unlisted.csr

# Revocation: one revoked serial, a fresh CRL, a stale one, a forged one.
"$OPENSSL" ca -config openssl.cnf -revoke revoked.pem -crl_reason keyCompromise 2>/dev/null
"$OPENSSL" ca -config openssl.cnf -gencrl -crldays 30 -out crl.pem 2>/dev/null
"$OPENSSL" crl -in crl.pem -outform DER -out crl.der
"$OPENSSL" ca -config openssl.cnf -gencrl -crl_lastupdate 20200101000000Z \
	-crl_nextupdate 20200102000000Z -out crl-stale.pem 2>/dev/null
"$OPENSSL" ca -config openssl.cnf -gencrl -crldays 30 -cert ca2.pem -keyfile ca2.key \
	-out crl-otherkey.pem 2>/dev/null
"$OPENSSL" ca -config openssl.cnf -gencrl -crldays 30 -cert ca2.pem -keyfile ca2.key \
	-crlexts crl_ext_none -out crl-otherkey-noaki.pem 2>/dev/null

# The bytes a wallet would sign: what the server issued for a transaction.
printf '%s' 'watashi:v1:tx=3f9c2a:rp=https://rp.example:exp=2030-01-01T00:00:00Z' >data.txt

# CMS SignedData (DER), as card tools emit it.
cms() { "$OPENSSL" cms -sign -binary -in data.txt -outform DER "$@"; }
cms -signer sign.pem -inkey sign.key -md sha256 -nodetach -out sign-attached.p7s
cms -signer sign.pem -inkey sign.key -md sha256 -out sign-detached.p7s
cms -signer sign.pem -inkey sign.key -md sha256 -nodetach -noattr -out sign-noattr.p7s
cms -signer auth.pem -inkey auth.key -md sha256 -nodetach -out auth-attached.p7s
cms -signer auth.pem -inkey auth.key -md sha256 -out auth-detached.p7s
cms -signer sign.pem -inkey sign.key -md sha1 -nodetach -out sign-sha1.p7s
cms -signer sign.pem -inkey sign.key -signer auth.pem -inkey auth.key -md sha256 \
	-nodetach -out two-signers.p7s

# Raw PKCS#1 v1.5 signatures over SHA-256.
"$OPENSSL" dgst -sha256 -sign sign.key -out sign.sig data.txt
"$OPENSSL" dgst -sha256 -sign auth.key -out auth.sig data.txt
"$OPENSSL" base64 -in sign.sig -out sign.sig.b64

# Compact JWS (RS256, x5c) with openssl doing the signing.
b64url() { "$OPENSSL" base64 -A | tr '+/' '-_' | tr -d '='; }
jws() {
	cert=$1 k=$2 out=$3
	x5c=$("$OPENSSL" x509 -in "$cert" -outform DER | "$OPENSSL" base64 -A)
	hdr=$(printf '{"alg":"RS256","x5c":["%s"]}' "$x5c" | b64url)
	pay=$(b64url <data.txt)
	sig=$(printf '%s.%s' "$hdr" "$pay" | "$OPENSSL" dgst -sha256 -sign "$k" | b64url)
	printf '%s.%s.%s' "$hdr" "$pay" "$sig" >"$out"
}
jws sign.pem sign.key sign.jws
jws auth.pem auth.key auth.jws
