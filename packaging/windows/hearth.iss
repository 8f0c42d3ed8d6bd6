; Inno Setup script: dist\Hearth (from `pyinstaller packaging\hearth.spec`) as one installer,
; dist\Hearth-<version>-windows-x64-setup.exe. Built on Windows (see README, "Packaging"):
;
;   iscc /DAppVersion=0.1.0 packaging\windows\hearth.iss
;
; Installs per user by default (no administrator prompt; the user may choose all users), adds a
; Start menu entry and an optional desktop icon. Uninstalling removes the app only: models,
; chats and settings stay under %LOCALAPPDATA%\Hearth.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define AppName "Hearth"
#define Root "..\.."

[Setup]
; The AppId ties upgrades and the uninstaller to this app: never change it.
AppId={{F287A5D3-1568-4666-A3F0-070F171CB6D8}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=Hearth
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
MinVersion=10.0
OutputDir={#Root}\dist
OutputBaseFilename=Hearth-{#AppVersion}-windows-x64-setup
SetupIconFile={#Root}\assets\icons\hearth.ico
UninstallDisplayIcon={app}\Hearth.exe
; The bundle holds a ~100 MB model that barely compresses; lzma2 still helps with the rest.
Compression=lzma2
SolidCompression=yes
WizardStyle=modern

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#Root}\dist\Hearth\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\Hearth.exe"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\Hearth.exe"; Tasks: desktopicon

[Run]
Filename: "{app}\Hearth.exe"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent
