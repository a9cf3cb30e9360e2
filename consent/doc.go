// Package consent decides what each relying party learns about a resident,
// claim by claim, and releases exactly that.
//
// It is pure logic plus grant storage: no HTTP, no templates, no provider.
// The provider (package idp) calls it at five points, and every step's
// input is data the provider already stores, so the same request always
// yields the same answer on any node.
//
//  1. Request. The RP asks with scopes (name, birthdate, gender, address,
//     profile) and the `claims` parameter (OIDC Core §5.5), which can
//     mark claims essential, constrain their values, and ask for
//     verified_claims (OpenID Connect for Identity Assurance 1.0).
//     ParseClaimsRequest validates the parameter up front, so a malformed
//     one is an invalid_request at /authorize, not a surprise later.
//
//  2. Resolve. Resolve combines scopes and the claims parameter under the
//     client's policy (its tier): for each claim, where it goes (ID
//     token, userinfo), whether it is essential, and what value it must
//     have. Claims the tier does not allow are dropped and reported, not
//     errors, because OIDC lets an OP return fewer claims than asked.
//     Where the RP asks for the birth date but has said an age check
//     would do, the resident is offered the narrower claim. The RP says
//     so per request by asking for age_over_18/20 as an optional claim
//     next to an optional birthdate, or once at registration through
//     ClientPolicy.AgeAlternatives, which applies even when the birth
//     date is essential.
//
//  3. Decide. Decide compares the request with the resident's remembered
//     Grant for this RP: if every item was answered before (shared,
//     narrowed, or optional and declined) and prompt=consent is absent,
//     no screen; otherwise the screen asks only for the difference, or
//     for everything under prompt=consent.
//
//  4. Screen and Apply. The screen (package idp with templates) shows the
//     Decision's Items: essential ones locked, optional ones as
//     checkboxes, alternatives as radio buttons. ChoiceFromForm reads the
//     submission and Apply (through Store.Consent, which makes it atomic)
//     turns it into the new Grant, refusing forged or stale forms without
//     changing anything.
//
//  5. Grant. Grants are stored per (account, client), durably, with an
//     index per account for the account page (Store.List) and
//     Store.Revoke, which returns the deleted grant so the provider can
//     revoke that RP's tokens. Effective(grant, request) is what this one
//     authorization may release; the provider records it on the auth
//     request so later tokens cannot release more.
//
//  6. Release. Release builds the claims of one target (id_token,
//     userinfo, introspection) from the verified facts: exactly the
//     granted and requested claims, each only if its fact exists and
//     meets the RP's value constraint; verified_claims only when asked
//     for through the claims parameter and granted. Facts whose source
//     certificate has since been revoked are stale: Release refuses them
//     with ErrStaleFacts so that the resident proves again.
//
// One fact, one choice. The name contains the family and the given name,
// so when an RP asks for the name, the parts it asks for next to it are
// folded into the name's line (Item.Parts): ticking the name shares them,
// unticking it withholds them and remembers the "no" for the whole. A
// part the RP marks essential stays its own locked line, and a part asked
// without the name is a line of its own. The birth date and the age checks
// asked next to it follow the same rule (Item.Includes).
//
// The invariant the tests check as a property, over random requests and
// random choices: nothing leaves without consent. Release's output for any
// target is a subset of the granted, requested and allowed claims, and
// contains each of them that the facts can supply; and a whole the
// resident withheld is withheld with its parts.
//
// Age checks follow Japanese law (see AgeReachedDate): the age goes up at
// the end of the day before the birthday, computed in Japan time.
package consent
