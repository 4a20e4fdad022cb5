//! The directory as the platform sees it: the change log of members and departments
//! ([`changelog`]), and the mirror of member records that logins read ([`mirror`]). Reading
//! DingTalk's user and department JSON is in [`crate::dingtalk::records`].

pub mod changelog;
pub mod mirror;
