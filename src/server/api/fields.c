#include "server/api/fields.h"

#include <stdlib.h>
#include <string.h>

const char *field_username(json_t *v, char out[33])
{
    const char *s = json_string_value(v);
    size_t n = s ? strlen(s) : 0;
    if (n < 3 || n > 32) return "username must be 3 to 32 characters of a-z, 0-9, _ and .";
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c + 32);
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.'))
            return "username must be 3 to 32 characters of a-z, 0-9, _ and .";
        out[i] = c;
    }
    out[n] = 0;
    return NULL;
}

const char *field_password(json_t *v)
{
    size_t n = json_is_string(v) ? json_string_length(v) : 0;
    if (n < 8 || n > 1024) return "password must be 8 to 1024 bytes.";
    if (strlen(json_string_value(v)) != n) return "password must not contain NUL bytes.";
    return NULL;
}

const char *field_display_name(json_t *v, char out[257])
{
    const char *s = json_string_value(v);
    if (!s || !*s || strlen(s) > 256 || utf8_len((const uint8_t *)s, strlen(s)) > 64)
        return "display_name must be 1 to 64 characters.";
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20) return "display_name must not contain control characters.";
    strcpy(out, s);
    return NULL;
}

const char *field_email(json_t *v, char out[255])
{
    const char *s = json_string_value(v);
    if (!s) return "email must be a string.";
    size_t n = strlen(s);
    const char *at = strchr(s, '@');
    if (n > 0 &&
        (n > 254 || !at || at == s || !at[1] || strchr(at + 1, '@') || strpbrk(s, " \t\r\n<>\"")))
        return "email must look like name@example.org (at most 254 bytes).";
    strcpy(out, s);
    return NULL;
}

const char *field_phone(json_t *v, char out[33])
{
    const char *s = json_string_value(v);
    if (!s) return "phone must be a string.";
    size_t n = strlen(s);
    if (n > 0) {
        bool ok = s[0] == '+' && n >= 7 && n <= 16;
        for (size_t i = 1; ok && i < n; i++) ok = s[i] >= '0' && s[i] <= '9';
        if (!ok) return "phone must be + and 6 to 15 digits, like +4915112345678.";
    }
    strcpy(out, s);
    return NULL;
}

const char *field_avatar(json_t *v, char out[ID_MAX])
{
    const char *s = json_string_value(v);
    if (!s || (*s && !id_valid(s, "m_"))) return "avatar must be a media id (m_...) or \"\".";
    strcpy(out, s);
    return NULL;
}

const char *field_settings(json_t *v, char out[1025])
{
    if (!json_is_object(v)) return "settings must be an object.";
    char *s = json_dumps(v, JSON_COMPACT);
    if (!s || strlen(s) > 1024) {
        free(s);
        return "settings must be at most 1 KiB as JSON.";
    }
    strcpy(out, s);
    free(s);
    return NULL;
}

const char *field_device_name(json_t *v, char out[65])
{
    const char *s = json_string_value(v);
    if (!s || !*s || strlen(s) > 64) return "device_name must be 1 to 64 bytes.";
    strcpy(out, s);
    return NULL;
}

void field_conflict(api_req *r, const char *field)
{
    if (field && strcmp(field, "email") == 0)
        api_error(r, 409, "email_taken", "That email belongs to another account.");
    else if (field && strcmp(field, "phone") == 0)
        api_error(r, 409, "phone_taken", "That phone number belongs to another account.");
    else
        api_error(r, 409, "username_taken", "That username is taken; choose another.");
}
