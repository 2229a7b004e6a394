//! One-time codes and links through the region's use cases, with the
//! federation's clock in the test's hand: accepted once, bound to their
//! user and purpose, wrong codes counted until the code is dead, expired
//! after their lifetime, a new code replacing the last, and kept (as keyed
//! hashes) only in the user's home region.

use crate::harness::*;
use domicile_identity::{
    IdentityError,
    one_time::{ATTEMPTS, CodeRefused, TTL_SECONDS},
};
use domicile_store::Purpose;

/// The user id of a new user registered in eu.
async fn eu_user(fed: &Fed, email: &str) -> String {
    fed.client("eu")
        .await
        .register(register_req(email))
        .await
        .unwrap()
        .into_inner()
        .user_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_is_accepted_once_for_its_user_and_purpose() {
    let fed = Fed::start().await;
    let ada = eu_user(&fed, "ada@example.de").await;
    let bob = eu_user(&fed, "bob@example.de").await;
    let eu = fed.nodes["eu"].identity();
    let issued = eu.issue_one_time(&ada, Purpose::VerifyEmail).await.unwrap();
    assert_eq!(issued.code.len(), 6);
    assert!(
        issued.link.starts_with("ol_eu_"),
        "the link names its region"
    );
    let check = |user: &str, purpose, code: &str| {
        let (user, code) = (user.to_owned(), code.to_owned());
        async move { eu.check_one_time_code(&user, purpose, &code).await.unwrap() }
    };
    let other_code = if issued.code == "000000" {
        "000001"
    } else {
        "000000"
    };
    // Another user's code, another purpose, a malformed one: refused.
    assert_eq!(
        check(&bob, Purpose::VerifyEmail, &issued.code).await,
        Err(CodeRefused::Dead)
    );
    assert_eq!(
        check(&ada, Purpose::SignIn, &issued.code).await,
        Err(CodeRefused::Dead)
    );
    assert_eq!(
        check(&ada, Purpose::VerifyEmail, "12345").await,
        Err(CodeRefused::Malformed)
    );
    assert_eq!(
        check(&ada, Purpose::VerifyEmail, other_code).await,
        Err(CodeRefused::Wrong {
            attempts_left: ATTEMPTS - 1
        })
    );
    assert_eq!(
        check(&ada, Purpose::VerifyEmail, &issued.code).await,
        Ok(())
    );
    assert_eq!(
        check(&ada, Purpose::VerifyEmail, &issued.code).await,
        Err(CodeRefused::Dead),
        "a replay is refused"
    );
    // The link went with the code: spent too.
    assert_eq!(
        eu.check_one_time_link(&issued.link, Purpose::VerifyEmail)
            .await
            .unwrap(),
        Err(CodeRefused::Dead)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_expiry_and_links() {
    let fed = Fed::start().await;
    let ada = eu_user(&fed, "ada@example.de").await;
    let eu = fed.nodes["eu"].identity();
    let wrong = |code: &str| {
        if code == "999999" {
            "999998".to_owned()
        } else {
            "999999".to_owned()
        }
    };

    // Out of attempts: dead even for the right digits.
    let issued = eu
        .issue_one_time(&ada, Purpose::ResetPassword)
        .await
        .unwrap();
    for left in (0..ATTEMPTS).rev() {
        assert_eq!(
            eu.check_one_time_code(&ada, Purpose::ResetPassword, &wrong(&issued.code))
                .await
                .unwrap(),
            Err(CodeRefused::Wrong {
                attempts_left: left
            })
        );
    }
    assert_eq!(
        eu.check_one_time_code(&ada, Purpose::ResetPassword, &issued.code)
            .await
            .unwrap(),
        Err(CodeRefused::Dead)
    );

    // A new code replaces the last; its link is accepted once and names ada.
    let first = eu.issue_one_time(&ada, Purpose::SignIn).await.unwrap();
    let second = eu.issue_one_time(&ada, Purpose::SignIn).await.unwrap();
    assert_eq!(
        eu.check_one_time_link(&first.link, Purpose::SignIn)
            .await
            .unwrap(),
        Err(CodeRefused::Dead),
        "replaced"
    );
    assert_eq!(
        eu.check_one_time_link(&second.link, Purpose::VerifyEmail)
            .await
            .unwrap(),
        Err(CodeRefused::Dead)
    );
    assert_eq!(
        eu.check_one_time_link(&second.link, Purpose::SignIn)
            .await
            .unwrap(),
        Ok(ada.clone())
    );
    assert_eq!(
        eu.check_one_time_link(&second.link, Purpose::SignIn)
            .await
            .unwrap(),
        Err(CodeRefused::Dead)
    );
    let mut forged = second.link.clone();
    forged.replace_range(forged.len() - 2.., "AA");
    assert_eq!(
        eu.check_one_time_link(&forged, Purpose::SignIn)
            .await
            .unwrap(),
        Err(CodeRefused::Dead)
    );

    // Expiry: at its lifetime the code is refused.
    let issued = eu.issue_one_time(&ada, Purpose::VerifyEmail).await.unwrap();
    fed.clock.advance(TTL_SECONDS);
    assert_eq!(
        eu.check_one_time_code(&ada, Purpose::VerifyEmail, &issued.code)
            .await
            .unwrap(),
        Err(CodeRefused::Dead)
    );
}

/// Codes live only in the user's home region: another region's node
/// refuses to issue or check one for the user, and stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_stay_in_the_home_region() {
    let fed = Fed::start().await;
    let ada = eu_user(&fed, "ada@example.de").await;
    let us = fed.nodes["us"].identity();
    assert!(matches!(
        us.issue_one_time(&ada, Purpose::VerifyEmail).await,
        Err(IdentityError::WrongRegion { .. })
    ));
    assert!(matches!(
        us.check_one_time_code(&ada, Purpose::VerifyEmail, "123456")
            .await,
        Err(IdentityError::WrongRegion { .. })
    ));
    let issued = fed.nodes["eu"]
        .identity()
        .issue_one_time(&ada, Purpose::VerifyEmail)
        .await
        .unwrap();
    assert!(matches!(
        us.check_one_time_link(&issued.link, Purpose::VerifyEmail)
            .await,
        Err(IdentityError::WrongRegion { .. })
    ));
    assert!(
        fed.nodes["eu"]
            .identity()
            .check_one_time_link(&issued.link, Purpose::VerifyEmail)
            .await
            .unwrap()
            .is_ok()
    );
}
