//! The words and looks of each message: a subject, a plain-text body and
//! an HTML body (askama templates under `crates/messages/templates`, the
//! HTML escaped), branded for the app the user was signing in to (its
//! display name, logo and colours; the federation's name otherwise), in
//! the user's language when we have it (English and German, the hosted
//! pages' languages), else the app's default. No sending here.

use askama::Template;
use domicile_core::clients::{Branding, LOCALES};
use domicile_identity::messages::{Message, MessageKind};

/// The words of the messages in one language.
pub struct Texts {
    pub lang: &'static str,
    pub hello: &'static str,
    pub code_is: &'static str,
    pub expires_before: &'static str,
    pub expires_after: &'static str,
    pub sent_from: &'static str,
    pub ignore_request: &'static str,
    pub ignore_notice: &'static str,
    pub verify_subject: &'static str,
    pub verify_intro: &'static str,
    pub verify_action: &'static str,
    pub reset_subject: &'static str,
    pub reset_intro: &'static str,
    pub reset_action: &'static str,
    pub sign_in_subject: &'static str,
    pub sign_in_intro: &'static str,
    pub sign_in_action: &'static str,
    pub changed_subject: &'static str,
    pub changed_intro: &'static str,
    pub new_email_subject: &'static str,
    pub new_email_intro: &'static str,
    pub new_email_action: &'static str,
    pub email_changed_subject: &'static str,
    pub email_changed_intro: &'static str,
    pub phone_changed_subject: &'static str,
    pub phone_changed_intro: &'static str,
    pub factor_changed_subject: &'static str,
    pub factor_changed_intro: &'static str,
    pub recovery_used_subject: &'static str,
    pub recovery_used_intro: &'static str,
    pub check_subject: &'static str,
    pub check_intro: &'static str,
    pub check_ignore: &'static str,
    pub sms_code: &'static str,
}

pub const EN: Texts = Texts {
    lang: "en",
    hello: "Hello,",
    code_is: "Your code:",
    expires_before: "The code and the link work once, for",
    expires_after: "minutes.",
    sent_from: "your account is kept in",
    ignore_request: "If you did not ask for this, ignore this message: nothing changes.",
    ignore_notice: "If this was not you, reset your password at once and contact the app's support.",
    verify_subject: "Confirm your email address for",
    verify_intro: "Confirm that this is your email address by entering the code, or with the button.",
    verify_action: "Confirm email address",
    reset_subject: "Reset your password for",
    reset_intro: "Someone asked to reset the password of the account with this email address. Enter the code, or choose a new password with the button.",
    reset_action: "Choose a new password",
    sign_in_subject: "Your sign-in code for",
    sign_in_intro: "Sign in by entering the code, or with the button.",
    sign_in_action: "Sign in",
    changed_subject: "Your password was changed for",
    changed_intro: "The password of your account was just changed, and your other sessions were signed out.",
    new_email_subject: "Confirm your new email address for",
    new_email_intro: "Someone asked to make this the email address of their account. Confirm it with the code or the button; until then the account keeps its old address.",
    new_email_action: "Confirm new email address",
    email_changed_subject: "Your email address was changed for",
    email_changed_intro: "The email address of your account was changed to another one. This address no longer signs in to it.",
    phone_changed_subject: "The phone number of your account was changed for",
    phone_changed_intro: "A phone number was just added to your account, replaced or removed. Codes by text message go only to the account's current number.",
    factor_changed_subject: "Two-step sign-in of your account was changed for",
    factor_changed_intro: "An authenticator app was just added to or removed from your account, or its recovery codes were replaced. If this was not you, reset your password now.",
    recovery_used_subject: "A recovery code was used to sign in to",
    check_subject: "Confirm your sign-in to",
    check_intro: "Someone signed in to your account with its password, from a device or place you have not signed in from before. Enter this code where you are signing in to confirm it is you.",
    check_ignore: "If this was not you, give the code to no one and change your password now: someone else knows it.",
    recovery_used_intro: "Someone just signed in to your account with one of its recovery codes instead of the authenticator app. Each code works once. If this was not you, reset your password and replace your recovery codes.",
    sms_code: "is your code for",
};

pub const DE: Texts = Texts {
    lang: "de",
    hello: "Hallo,",
    code_is: "Ihr Code:",
    expires_before: "Code und Link gelten einmal, für",
    expires_after: "Minuten.",
    sent_from: "Ihr Konto wird gespeichert in",
    ignore_request: "Wenn Sie das nicht angefordert haben, ignorieren Sie diese Nachricht: es ändert sich nichts.",
    ignore_notice: "Wenn Sie das nicht waren, setzen Sie Ihr Passwort sofort zurück und wenden Sie sich an den Support der App.",
    verify_subject: "Bestätigen Sie Ihre E-Mail-Adresse für",
    verify_intro: "Bestätigen Sie mit dem Code oder der Schaltfläche, dass dies Ihre E-Mail-Adresse ist.",
    verify_action: "E-Mail-Adresse bestätigen",
    reset_subject: "Passwort zurücksetzen für",
    reset_intro: "Jemand möchte das Passwort des Kontos mit dieser E-Mail-Adresse zurücksetzen. Geben Sie den Code ein oder wählen Sie mit der Schaltfläche ein neues Passwort.",
    reset_action: "Neues Passwort wählen",
    sign_in_subject: "Ihr Anmeldecode für",
    sign_in_intro: "Melden Sie sich mit dem Code oder der Schaltfläche an.",
    sign_in_action: "Anmelden",
    changed_subject: "Ihr Passwort wurde geändert für",
    changed_intro: "Das Passwort Ihres Kontos wurde soeben geändert, und Ihre anderen Sitzungen wurden abgemeldet.",
    new_email_subject: "Bestätigen Sie Ihre neue E-Mail-Adresse für",
    new_email_intro: "Jemand möchte diese Adresse zur E-Mail-Adresse seines Kontos machen. Bestätigen Sie sie mit dem Code oder der Schaltfläche; bis dahin behält das Konto seine alte Adresse.",
    new_email_action: "Neue E-Mail-Adresse bestätigen",
    email_changed_subject: "Ihre E-Mail-Adresse wurde geändert für",
    email_changed_intro: "Die E-Mail-Adresse Ihres Kontos wurde durch eine andere ersetzt. Mit dieser Adresse melden Sie sich dort nicht mehr an.",
    phone_changed_subject: "Die Telefonnummer Ihres Kontos wurde geändert für",
    phone_changed_intro: "Soeben wurde Ihrem Konto eine Telefonnummer hinzugefügt, ersetzt oder entfernt. Codes per SMS gehen nur an die aktuelle Nummer des Kontos.",
    factor_changed_subject: "Die Anmeldung in zwei Schritten Ihres Kontos wurde geändert für",
    factor_changed_intro: "Soeben wurde Ihrem Konto eine Authenticator-App hinzugefügt oder entfernt, oder seine Wiederherstellungscodes wurden ersetzt. Falls Sie das nicht waren, setzen Sie jetzt Ihr Passwort zurück.",
    recovery_used_subject: "Ein Wiederherstellungscode wurde zur Anmeldung verwendet bei",
    check_subject: "Bestätigen Sie Ihre Anmeldung bei",
    check_intro: "Jemand hat sich mit Ihrem Passwort angemeldet, von einem Gerät oder Ort, von dem aus Sie sich bisher nicht angemeldet haben. Geben Sie diesen Code dort ein, wo Sie sich gerade anmelden, um zu bestätigen, dass Sie es sind.",
    check_ignore: "Falls Sie das nicht waren, geben Sie den Code niemandem und ändern Sie jetzt Ihr Passwort: Es ist jemand anderem bekannt.",
    recovery_used_intro: "Soeben hat sich jemand mit einem Wiederherstellungscode statt der Authenticator-App bei Ihrem Konto angemeldet. Jeder Code gilt einmal. Falls Sie das nicht waren, setzen Sie Ihr Passwort zurück und ersetzen Sie Ihre Wiederherstellungscodes.",
    sms_code: "ist Ihr Code für",
};

/// The texts for a message's language: its locale's primary tag if we
/// have it, else the brand's default, else English.
pub fn texts(locale: Option<&str>, brand: &Branding) -> &'static Texts {
    let pick = |tag: &str| {
        let primary = tag.split(['-', '_']).next().unwrap_or_default();
        LOCALES
            .iter()
            .any(|l| l.eq_ignore_ascii_case(primary))
            .then(|| match primary.to_ascii_lowercase().as_str() {
                "de" => &DE,
                _ => &EN,
            })
    };
    locale
        .and_then(pick)
        .or_else(|| pick(&brand.default_locale))
        .unwrap_or(&EN)
}

#[derive(Template)]
#[template(path = "email.txt")]
struct Text<'a> {
    t: &'static Texts,
    intro: &'a str,
    action: &'a str,
    ignore: &'a str,
    code: Option<&'a str>,
    link: Option<&'a str>,
    expires_in_minutes: i64,
    brand: &'a str,
    residency: &'a str,
}

#[derive(Template)]
#[template(path = "email.html")]
struct Html<'a> {
    t: &'static Texts,
    subject: &'a str,
    intro: &'a str,
    action: &'a str,
    ignore: &'a str,
    code: Option<&'a str>,
    link: Option<&'a str>,
    expires_in_minutes: i64,
    brand: &'a str,
    residency: &'a str,
    logo: Option<&'a str>,
    primary: &'a str,
    background: &'a str,
}

/// A rendered email.
#[derive(Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
    pub lang: &'static str,
}

impl std::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rendered")
            .field("lang", &self.lang)
            .finish_non_exhaustive()
    }
}

/// Why a message could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{0} is sent by text message only")]
    NotAnEmail(&'static str),
    #[error(transparent)]
    Template(#[from] askama::Error),
}

/// Renders `message` as an email branded `brand`, from a region whose
/// residency label is `residency`.
pub fn email(
    message: &Message,
    brand: &Branding,
    residency: &str,
) -> Result<Rendered, RenderError> {
    let t = texts(message.locale.as_deref(), brand);
    let (subject, intro, action, ignore) = match message.kind {
        MessageKind::VerifyPhone => return Err(RenderError::NotAnEmail(message.kind.as_str())),
        MessageKind::PhoneChanged => (
            t.phone_changed_subject,
            t.phone_changed_intro,
            "",
            t.ignore_notice,
        ),
        MessageKind::SecondFactorChanged => (
            t.factor_changed_subject,
            t.factor_changed_intro,
            "",
            t.ignore_notice,
        ),
        MessageKind::RecoveryCodeUsed => (
            t.recovery_used_subject,
            t.recovery_used_intro,
            "",
            t.ignore_notice,
        ),
        MessageKind::VerifyEmail => (
            t.verify_subject,
            t.verify_intro,
            t.verify_action,
            t.ignore_request,
        ),
        MessageKind::ResetPassword => (
            t.reset_subject,
            t.reset_intro,
            t.reset_action,
            t.ignore_request,
        ),
        MessageKind::SignInCode => (
            t.sign_in_subject,
            t.sign_in_intro,
            t.sign_in_action,
            t.ignore_request,
        ),
        MessageKind::SignInCheck => (t.check_subject, t.check_intro, "", t.check_ignore),
        MessageKind::PasswordChanged => (t.changed_subject, t.changed_intro, "", t.ignore_notice),
        MessageKind::ConfirmNewEmail => (
            t.new_email_subject,
            t.new_email_intro,
            t.new_email_action,
            t.ignore_request,
        ),
        MessageKind::EmailChanged => (
            t.email_changed_subject,
            t.email_changed_intro,
            "",
            t.ignore_notice,
        ),
    };
    let subject = format!("{subject} {}", brand.display_name);
    let text = Text {
        t,
        intro,
        action,
        ignore,
        code: message.code.as_deref(),
        link: message.link.as_deref(),
        expires_in_minutes: message.expires_in_minutes,
        brand: &brand.display_name,
        residency,
    }
    .render()?;
    let html = Html {
        t,
        subject: &subject,
        intro,
        action,
        ignore,
        code: message.code.as_deref(),
        link: message.link.as_deref(),
        expires_in_minutes: message.expires_in_minutes,
        brand: &brand.display_name,
        residency,
        logo: brand.logo_url.as_deref(),
        primary: &brand.primary_color,
        background: &brand.background_color,
    }
    .render()?;
    Ok(Rendered {
        subject,
        text,
        html,
        lang: t.lang,
    })
}

/// The one line of an SMS: the code and the app's name.
pub fn sms(message: &Message, brand: &Branding) -> String {
    let t = texts(message.locale.as_deref(), brand);
    format!(
        "{} {} {}",
        message.code.as_deref().unwrap_or_default(),
        t.sms_code,
        brand.display_name
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use domicile_identity::messages::Channel;

    fn brand(name: &str, locale: &str) -> Branding {
        Branding {
            display_name: name.into(),
            logo_url: Some("https://app.example/logo.png".into()),
            primary_color: "#123456".into(),
            background_color: "#fafafa".into(),
            terms_url: None,
            privacy_url: None,
            default_locale: locale.into(),
        }
    }

    fn message(kind: MessageKind, locale: Option<&str>) -> Message {
        Message {
            channel: Channel::Email,
            to: "ada@example.net".into(),
            kind,
            user_id: "usr_eu_x".into(),
            client_id: None,
            locale: locale.map(str::to_owned),
            code: kind.purpose().map(|_| "042137".into()),
            link: kind
                .purpose()
                .filter(|_| kind.carries_link())
                .map(|_| "https://id.example/link?t=ol_eu_x&p=reset_password".into()),
            expires_in_minutes: if kind.purpose().is_some() { 15 } else { 0 },
        }
    }

    /// (kind, locale asked, brand default, words the subject has, language)
    const CASES: &[(MessageKind, Option<&str>, &str, &str, &str)] = &[
        (
            MessageKind::VerifyEmail,
            None,
            "en",
            "Confirm your email",
            "en",
        ),
        (
            MessageKind::VerifyEmail,
            Some("de-AT"),
            "en",
            "Bestätigen Sie",
            "de",
        ),
        (
            MessageKind::ResetPassword,
            Some("fr"),
            "de",
            "Passwort zurücksetzen",
            "de",
        ),
        (
            MessageKind::ResetPassword,
            Some("en-GB"),
            "de",
            "Reset your password",
            "en",
        ),
        (MessageKind::SignInCode, None, "de", "Ihr Anmeldecode", "de"),
        (
            MessageKind::SignInCode,
            Some("xx"),
            "xx",
            "Your sign-in code",
            "en",
        ),
        (
            MessageKind::PasswordChanged,
            Some("de"),
            "en",
            "Passwort wurde geändert",
            "de",
        ),
        (
            MessageKind::PhoneChanged,
            None,
            "en",
            "phone number of your account",
            "en",
        ),
        (
            MessageKind::PhoneChanged,
            Some("de"),
            "en",
            "Telefonnummer Ihres Kontos",
            "de",
        ),
        (
            MessageKind::SecondFactorChanged,
            None,
            "en",
            "Two-step sign-in",
            "en",
        ),
        (
            MessageKind::RecoveryCodeUsed,
            Some("de"),
            "en",
            "Wiederherstellungscode",
            "de",
        ),
        (
            MessageKind::SignInCheck,
            None,
            "en",
            "Confirm your sign-in",
            "en",
        ),
        (
            MessageKind::SignInCheck,
            Some("de"),
            "en",
            "Bestätigen Sie Ihre Anmeldung",
            "de",
        ),
    ];

    #[test]
    fn each_kind_in_each_language_with_code_link_and_brand() {
        for (kind, locale, default, words, lang) in CASES {
            let b = brand("Acme <Shop>", default);
            let m = message(*kind, *locale);
            let r = email(&m, &b, "EU").unwrap();
            assert!(r.subject.contains(words), "{kind:?}: {}", r.subject);
            assert!(r.subject.ends_with("Acme <Shop>"), "{}", r.subject);
            assert_eq!(r.lang, *lang, "{kind:?} {locale:?}");
            assert!(r.html.contains(&format!("lang=\"{lang}\"")));
            // The brand's name is escaped in HTML, verbatim in text.
            assert!(
                r.html.contains("Acme &#60;Shop&#62;") || r.html.contains("Acme &lt;Shop&gt;"),
                "{}",
                r.html
            );
            assert!(r.text.contains("Acme <Shop> · "), "{}", r.text);
            assert!(
                r.html.contains("#fafafa") && r.html.contains("logo.png"),
                "{}",
                r.html
            );
            assert_eq!(
                r.html.contains("#123456"),
                m.link.is_some(),
                "the button has the brand colour"
            );
            assert!(r.text.contains("EU") && r.html.contains("EU"));
            match kind.purpose() {
                Some(_) => {
                    for body in [&r.text, &r.html] {
                        assert!(body.contains("042137"), "{body}");
                        assert!(body.contains("15"), "{body}");
                    }
                    if m.link.is_none() {
                        assert!(!r.html.contains("<a href"), "a code only: {}", r.html);
                        continue;
                    }
                    assert!(
                        r.text
                            .contains("https://id.example/link?t=ol_eu_x&p=reset_password")
                    );
                    assert!(
                        r.html
                            .contains("https://id.example/link?t=ol_eu_x&#38;p=reset_password")
                            || r.html
                                .contains("https://id.example/link?t=ol_eu_x&amp;p=reset_password"),
                        "{}",
                        r.html
                    );
                }
                None => {
                    assert!(!r.text.contains("link?"), "{}", r.text);
                    assert!(!r.html.contains("<a href"), "{}", r.html);
                }
            }
        }
    }

    #[test]
    fn an_sms_is_one_line_with_the_code() {
        let m = message(MessageKind::SignInCode, Some("de"));
        let line = sms(&m, &brand("Acme", "en"));
        assert_eq!(line, "042137 ist Ihr Code für Acme");
    }

    #[test]
    fn a_phone_verification_is_never_rendered_as_an_email() {
        let m = message(MessageKind::VerifyPhone, None);
        assert!(matches!(
            email(&m, &brand("Acme", "en"), "EU"),
            Err(RenderError::NotAnEmail("verify_phone"))
        ));
        assert_eq!(
            sms(&m, &brand("Acme", "en")),
            "042137 is your code for Acme"
        );
    }
}
